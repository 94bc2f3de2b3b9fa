"""Run ``sandbox-lifecycle.sh`` on a bastion over SSH, with the guarantees of a local run.

``run_lifecycle_on_bastion`` connects with Fabric (ssh_config's User, Port,
HostName, IdentityFile and ProxyJump, ``ProxyJump none`` included), checks every
host key against known_hosts and rejects unknown or changed keys, checks the
bastion's tools, uploads the script into a private temporary folder, runs it
there, and records one outcome per phase from its output, as
``checkpoint.lifecycle.run_lifecycle_script`` does for a local run.

Secrets stay on the bastion: the URIs carry no password, and the script reads
passwords from the bastion's own pgpass file, whose path is a setting. Settings
travel in a file of mode 600 inside the mode 700 work folder, not on a command line.

A dropped connection stops the script, which restores the sandbox. Without a PTY,
sshd (OpenSSH 9.2) sends no SIGHUP to the command when it loses the client: the
command sees EOF on stdin at once, and EPIPE only at its next write, which may
come an hour later or kill a shell without traps. The wrapper on the bastion
(``run-on-bastion.sh``) therefore watches stdin and, at EOF, sends SIGTERM to the
script's process group. The script's TERM trap stops its children, so an open
restore transaction rolls back and the previous sandbox stays. A refresh whose
restore had already committed keeps the new sandbox. The script writes into files
that the wrapper relays, so it never writes into the dead connection. The wrapper
removes the work folder when the script ends. The same path serves an interrupted
local process: SIGINT, SIGTERM or SIGHUP here closes stdin, and any exit of this
process closes the connection. A connection that dies silently (no FIN or RST)
goes unnoticed by sshd until TCP keepalive gives up, so the script then runs to its
end and the sandbox is new.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

from checkpoint.bastion.errors import (
    AuthenticationFailed,
    BastionError,
    BastionToolsMissing,
    ConnectionDropped,
    HostKeyRejected,
    HostUnreachable,
)
from checkpoint.bastion.remote import ToolReport, check_tools, start_lifecycle
from checkpoint.bastion.ssh import bastion_connection, fingerprint
from checkpoint.bastion.target import (
    BastionSettings,
    BastionTarget,
    load_bastion_settings,
    parse_target,
)
from checkpoint.exceptions import ConfigError
from checkpoint.lifecycle import (
    STDERR_TAIL_LINES,
    drain_stderr,
    follow_phases,
    lifecycle_environment,
    record_failure,
)
from checkpoint.outcome import Outcome, Run, StepFailed
from checkpoint.settings import LifecycleSettings

# The lifecycle variables that mean the same on the bastion. PGPASSFILE and
# LIFECYCLE_WORK_DIR name local paths, so the bastion gets its own from BastionSettings.
SHARED_VARIABLES = ("LIFECYCLE_TRANSPORT", "PROD_DB_URI", "SANDBOX_DB_URI", "PROD_DOCUMENTS_DIR", "SANDBOX_DOCUMENTS_DIR",
                    "LIFECYCLE_CHECKPOINT_DIR", "LIFECYCLE_CHECKPOINT_KEEP")
URI_SETTINGS = {"PROD_DB_URI": "checkpoint.lifecycle.prod_db_uri", "SANDBOX_DB_URI": "checkpoint.lifecycle.sandbox_db_uri"}


def remote_environment(lifecycle: LifecycleSettings, bastion: BastionSettings) -> dict[str, str]:
    """Return the variables the script gets on the bastion: non-secret settings only, never this process's env."""
    local = lifecycle_environment(lifecycle)
    environment = {name: local[name] for name in SHARED_VARIABLES if name in local}
    if lifecycle.transport == "kubectl":
        # NOTE: KUBECONFIG, when set, names a file on the bastion: the same path as here.
        environment.update(lifecycle.kube_env)
    for name, setting in URI_SETTINGS.items():
        if name in environment and urlsplit(environment[name]).password is not None:
            raise ConfigError(
                f"invalid {setting}: remove the password from the URI; it belongs in the bastion's pgpass file "
                "(checkpoint.bastion.pgpassfile)"
            )
    if bastion.pgpassfile:
        environment["PGPASSFILE"] = bastion.pgpassfile
    if bastion.work_dir:
        environment["LIFECYCLE_WORK_DIR"] = bastion.work_dir
    return environment


def run_lifecycle_on_bastion(
    lifecycle: LifecycleSettings,
    bastion: BastionSettings,
    run: Run,
    *,
    db_only: bool,
    guards_sql: Path | None = None,
    guards_check_sql: Path | None = None,
    arguments: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    lines: list[tuple[str, str]] | None = None,
) -> int:
    """Run ``refresh --yes`` (or ``arguments``) on the bastion and record one outcome per phase; return 0.

    ``extra_env`` adds non-secret variables, and ``lines`` collects the progress lines.

    ``guards_sql`` is uploaded beside the script, and LIFECYCLE_GUARDS_SQL names the copy;
    ``guards_check_sql`` likewise, named by LIFECYCLE_GUARDS_CHECK_SQL.

    A failure records a failed outcome and raises StepFailed, as a local run does.
    Connection, host key and authentication errors raise BastionError subclasses.
    """
    if not lifecycle.script.is_file():
        raise ConfigError(f"lifecycle script {lifecycle.script} not found: set checkpoint.lifecycle.script")
    environment = {**remote_environment(lifecycle, bastion), **(extra_env or {})}
    arguments = arguments or ["refresh", "--yes"] + (["--db-only"] if db_only else [])

    with bastion_connection(bastion) as connection:

        def bastion_preflight() -> Outcome:
            tools = check_tools(connection, lifecycle.transport, db_only=db_only, pgpassfile=bastion.pgpassfile)
            return Outcome.ok("bastion_preflight", f"{bastion.target}: {tools.summary()}", tools=tools.versions)

        run.step(bastion_preflight)
        files = {"LIFECYCLE_GUARDS_SQL": guards_sql, "LIFECYCLE_GUARDS_CHECK_SQL": guards_check_sql}
        files = {name: path for name, path in files.items() if path}
        with start_lifecycle(connection, lifecycle.script, environment, arguments, bastion.temp_dir, files) as process:
            return _follow_remote_script(process, run, lines)


def _follow_remote_script(process, run: Run, lines: list[tuple[str, str]] | None = None) -> int:
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    reader = threading.Thread(target=drain_stderr, args=(process.stderr, stderr_tail), daemon=True)
    reader.start()

    phases = follow_phases(process.stdout, run, lines)
    try:
        returncode = process.wait()
    except ConnectionDropped as error:
        phase = next(reversed(phases), "lifecycle") if phases else "lifecycle"
        outcome = run.record(Outcome.failed(phase, str(error), exit_code=error.exit_code))
        raise StepFailed(outcome) from None
    reader.join(timeout=5)

    if returncode != 0:
        record_failure(run, phases, returncode, list(stderr_tail))
    return returncode


__all__ = [
    "AuthenticationFailed",
    "BastionError",
    "BastionSettings",
    "BastionTarget",
    "BastionToolsMissing",
    "ConnectionDropped",
    "HostKeyRejected",
    "HostUnreachable",
    "ToolReport",
    "bastion_connection",
    "check_tools",
    "fingerprint",
    "load_bastion_settings",
    "parse_target",
    "remote_environment",
    "run_lifecycle_on_bastion",
]
