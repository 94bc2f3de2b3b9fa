"""Checkpoints of the armed sandbox: save, list, drop, rewind, and their status.

The lifecycle script does the work (``ops/sandbox/lib/checkpoint.sh``), locally or on
the bastion, so every database operation goes through its transport. This module
passes the metadata that only this side has (the agent login and the fingerprint
of its API key, never the key) and checks after a rewind that the key still
authenticates. Save and rewind also pass the SQL that checks the guards, so that
the script rejects an unguarded sandbox on save and an unguarded copy on rewind.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import nullcontext
from typing import Any

from checkpoint.agent_files import read_key_file
from checkpoint.exceptions import ConfigError, SafetyError
from checkpoint.guards_live import guards_check_sql_file
from checkpoint.lifecycle import describe_destruction, run_lifecycle_script
from checkpoint.outcome import Run
from checkpoint.settings import LifecycleSettings, Settings, require_sandbox_url

FIELD = re.compile(r"(\w+)=(\S*)")


def key_fingerprint(key: str) -> str:
    """Return ``sha256:`` and the first 16 hex digits of the key's SHA-256: enough to tell keys apart."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _metadata_env(settings: Settings) -> dict[str, str]:
    try:
        fingerprint = key_fingerprint(read_key_file(settings.agent.key_file))
    except ConfigError:
        fingerprint = "none"
    return {"CHECKPOINT_AGENT_LOGIN": settings.agent.login, "CHECKPOINT_KEY_FINGERPRINT": fingerprint}


def run_checkpoint_command(
    settings: Settings, run: Run, arguments: list[str], bastion: str | None = None, *, check_guards: bool = False
) -> list[tuple[str, str]]:
    """Run one checkpoint command of the lifecycle script, here or on the bastion; return its progress lines.

    With ``check_guards`` the script gets LIFECYCLE_GUARDS_CHECK_SQL, the SQL that
    checks every configured guard without applying it.
    """
    extra_env = _metadata_env(settings)
    checking = guards_check_sql_file(settings.guards) if check_guards and settings.guards else nullcontext()
    with checking as guards_check_sql:
        if not (bastion or settings.bastion["host"]):
            if guards_check_sql:
                extra_env["LIFECYCLE_GUARDS_CHECK_SQL"] = str(guards_check_sql)
            return run_lifecycle_script(settings.lifecycle, run, db_only=False, arguments=arguments, extra_env=extra_env)

        from checkpoint.bastion import load_bastion_settings, run_lifecycle_on_bastion

        target = load_bastion_settings(settings.bastion, settings.base_dir, target=bastion or "")
        lines: list[tuple[str, str]] = []
        run_lifecycle_on_bastion(settings.lifecycle, target, run, db_only=False, guards_check_sql=guards_check_sql,
                                 arguments=arguments, extra_env=extra_env, lines=lines)
        return lines


def _sandbox_configured(lifecycle: LifecycleSettings) -> bool:
    if lifecycle.transport == "kubectl":
        return bool(lifecycle.kube_env.get("SANDBOX_DB_NAME") and lifecycle.kube_env.get("SANDBOX_DOCUMENTS_PATH"))
    return bool(lifecycle.sandbox_db_uri and lifecycle.sandbox_documents_dir)


def parse_fields(text: str) -> dict[str, str]:
    """Parse ``key=value`` words of a progress line; ``documents_method=hardlinks`` and so on."""
    return dict(FIELD.findall(text))


def save_checkpoint(settings: Settings, run: Run, bastion: str | None = None) -> None:
    """Save a checkpoint of the sandbox, after checking that the sandbox accepts the agent's key.

    A checkpoint of a disarmed sandbox would disarm the agent on every rewind, and
    retention would drop armed checkpoints to keep it.
    """
    from checkpoint.relink import verify_api_key

    key = read_key_file(settings.agent.key_file)
    run.step(verify_api_key, require_sandbox_url(settings), key, settings.agent.login, settings.http_timeout)
    run_checkpoint_command(settings, run, ["checkpoint-save"], bastion, check_guards=True)


def list_checkpoints(settings: Settings, run: Run, bastion: str | None = None) -> list[dict[str, str]]:
    """Return one dict per checkpoint, oldest first, with the metadata the script printed."""
    lines = run_checkpoint_command(settings, run, ["checkpoint-list"], bastion)
    checkpoints = [
        parse_fields(text) for phase, text in lines if phase == "checkpoint-list" and text.startswith("checkpoint=")
    ]
    for item in checkpoints:
        if item.get("age_seconds", "").isdigit():
            item["age_seconds"] = int(item["age_seconds"])
    return checkpoints


def drop_checkpoint(settings: Settings, run: Run, name: str, bastion: str | None = None) -> None:
    if not name:
        raise ConfigError("checkpoint.drop needs the name of a checkpoint: run invoke checkpoint.list to see them")
    run_checkpoint_command(settings, run, ["checkpoint-drop", name], bastion)


def rewind_sandbox(
    settings: Settings, run: Run, *, yes: bool, bastion: str | None = None, break_lock: bool = False
) -> None:
    """Restore the newest checkpoint, then check with ``users/info`` that the agent's key still works.

    ``break_lock`` takes over the kubectl transport's Lease that a killed run left behind.
    """
    if not yes:
        raise SafetyError(
            f"rewind would replace {describe_destruction(settings.lifecycle, db_only=False)} "
            "with the newest checkpoint; run again with --yes to confirm"
        )
    arguments = ["rewind", "--yes"] + (["--break-lock"] if break_lock else [])
    run_checkpoint_command(settings, run, arguments, bastion, check_guards=True)

    from checkpoint.relink import verify_api_key

    key = read_key_file(settings.agent.key_file)
    run.step(verify_api_key, require_sandbox_url(settings), key, settings.agent.login, settings.http_timeout)


def checkpoint_status(settings: Settings, run: Run) -> dict[str, Any] | None:
    """Return the newest checkpoint's name and age and whether the sandbox changed since.

    ``None`` when the sandbox's settings are missing. The database signal is
    pg_stat_database's rows written (inserted, updated, deleted) since the checkpoint,
    and the documents signal is a fingerprint of every entry's path, size and mtime.
    """
    if not _sandbox_configured(settings.lifecycle):
        return None
    lines = run_checkpoint_command(settings, run, ["checkpoint-status"])
    fields: dict[str, Any] = {}
    for phase, text in lines:
        if phase == "checkpoint-status" and text.startswith("checkpoint="):
            fields = parse_fields(text)
    if fields.get("checkpoint") == "none" or not fields:
        return {"name": None}
    return {
        "name": fields["checkpoint"],
        "age_seconds": int(fields["age_seconds"]),
        "database_changed": fields["database_changed"],
        "documents_changed": fields["documents_changed"],
    }


def describe_checkpoint_status(checkpoint: dict[str, Any] | None) -> str:
    """Return the status line of the checkpoint part, with the command that fixes what it reports."""
    if not checkpoint:
        return "checkpoint: not configured"
    if checkpoint.get("error"):
        return f"checkpoint: unknown ({checkpoint['error']})"
    if not checkpoint["name"]:
        return "checkpoint: none; take one with invoke checkpoint.save"
    if checkpoint["database_changed"] == "busy":
        return f"checkpoint {checkpoint['name']}: another run is changing the sandbox now; run status again when it ends"
    if checkpoint["database_changed"] == "interrupted-rewind":
        return (
            f"checkpoint {checkpoint['name']}: a rewind to it was interrupted and its documents may be partly "
            "restored; run invoke rewind --yes to finish"
        )
    return (
        f"checkpoint {checkpoint['name']}: {checkpoint['age_seconds']}s old; since then database changed: "
        f"{checkpoint['database_changed']}, documents changed: {checkpoint['documents_changed']}"
    )
