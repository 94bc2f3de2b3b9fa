"""Invoke tasks for dolibarr-sandbox-checkpoint. Each one is a thin shell over ``checkpoint``.

Run ``invoke --list`` for the tasks and ``invoke --help TASK`` for a task's options.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task

from checkpoint.checkpoints import describe_checkpoint_status
from checkpoint.cli import execute, guard_config_loading
from checkpoint.exceptions import ConfigError, SafetyError
from checkpoint.guards_live import apply_guards, guards_sql_file
from checkpoint.lifecycle import describe_destruction, run_lifecycle_script
from checkpoint.relink import relink_env as relink_agent_env
from checkpoint.settings import DEFAULTS
from checkpoint.status import EXIT_CODES, GUARD_EXIT_CODES, PROD_ACCEPTS_KEY, collect_status

guard_config_loading()

JSON_HELP = "print one JSON object instead of the recap"
YES_HELP = "confirm that the sandbox database and documents will be replaced by prod's"
BASTION_HELP = "run the lifecycle script on this host over SSH: [user@]host[:port]"
BREAK_LOCK_HELP = "kubectl transport: take the refresh lock even when another run holds it"


def status(c, json=False):
    execute("status", c.config, _status, json_output=json)


status.__doc__ = (
    "Report whether the sandbox is live, the agent armed, the guards in effect and prod closed to the agent; "
    "read-only.\n\n"
    "Exit codes: 0 armed, 2 invalid settings, "
    + ", ".join(f"{code} {reason.value}" for reason, code in EXIT_CODES.items() if code)
    + ", ".join(["", *(f"{code} {meaning}" for meaning, code in GUARD_EXIT_CODES.items())])
    + f". Code {PROD_ACCEPTS_KEY} wins over all others; the guard codes apply only when the agent is armed."
)
status = task(status, help={"json": JSON_HELP})


def _status(settings, run):
    report = collect_status(settings, run)
    report.checkpoint = _checkpoint_status(settings, run)
    state = "armed" if report.armed else f"NOT armed ({report.reason.value})"
    if run.on_outcome:
        print(f"\nsandbox {report.sandbox_url}: {'live' if report.live else 'down'}; agent {report.agent}: {state}")
        print(f"guarded: {_yes_no(report.guarded)} ({report.guards_detail}); "
              f"isolated: {_yes_no(report.isolated)} ({report.isolated_detail})")
        print(describe_checkpoint_status(report.checkpoint))
    return report.as_dict(), report.exit_code


def _yes_no(value: bool | None) -> str:
    if value is None:
        return "unknown"
    return "yes" if value else "NO"



def _checkpoint_status(settings, run):
    """Return the checkpoint part of the status; a failure there leaves the armed verdict alone."""
    from checkpoint.checkpoints import checkpoint_status
    from checkpoint.outcome import StepFailed

    try:
        return checkpoint_status(settings, run)
    except StepFailed as failure:
        return {"name": None, "error": failure.outcome.message}


@task(
    help={
        "yes": YES_HELP,
        "db_only": "refresh the database only; leave the documents as they are",
        "bastion": BASTION_HELP,
        "break_lock": BREAK_LOCK_HELP,
        "json": JSON_HELP,
    }
)
def refresh(c, yes=False, db_only=False, bastion=None, break_lock=False, json=False):
    """Re-seed the sandbox from a read-only dump of prod. Destructive: needs --yes."""
    execute(
        "refresh", c.config, lambda settings, run: _refresh(settings, run, yes, db_only, bastion, break_lock),
        json_output=json,
    )


@task(help={"break_lock": BREAK_LOCK_HELP, "json": JSON_HELP})
def recover(c, break_lock=False, json=False):
    """Put back the ArgoCD sync policy and replicas that a killed refresh left changed (kubectl transport)."""

    def body(settings, run):
        if settings.lifecycle.transport != "kubectl":
            raise ConfigError("recover needs checkpoint.lifecycle.transport kubectl: the local transport changes no cluster")
        run_lifecycle_script(settings.lifecycle, run, db_only=False, command="recover", break_lock=break_lock)

    execute("recover", c.config, body, json_output=json)


@task(
    help={
        "rotate": "set a new API key even when the current one works",
        "headed": "open a visible browser for a person to log in, even when the secrets file has the password",
        "json": JSON_HELP,
    }
)
def provision(c, rotate=False, headed=False, json=False):
    """Create or repair the agent user, its rights and its API key through the web UI, then relink-env."""
    execute("provision", c.config, lambda settings, run: _provision(settings, run, rotate, headed), json_output=json)


@task(help={"json": JSON_HELP})
def relink_env(c, json=False):
    """Write the agent's .env (mode 600) from its key file and verify that the key authenticates."""
    execute("relink-env", c.config, relink_agent_env, json_output=json)


@task(help={"yes": YES_HELP, "bastion": BASTION_HELP, "json": JSON_HELP})
def reset(c, yes=False, bastion=None, json=False):
    """Refresh, provision, relink-env, checkpoint.save and status, stopping at the first failure."""

    def body(settings, run):
        from checkpoint.checkpoints import save_checkpoint
        from checkpoint.provision.prerequisites import check_provision_prerequisites

        # The refresh destroys the armed sandbox, so first make sure provision can follow it.
        check_provision_prerequisites(settings)
        _refresh(settings, run, yes, False, bastion)
        _provision(settings, run, False, False)
        save_checkpoint(settings, run, bastion)
        return _status(settings, run)

    execute("reset", c.config, body, json_output=json)


def _refresh(settings, run, yes: bool, db_only: bool, bastion: str | None, break_lock: bool = False) -> None:
    if not yes:
        target = describe_destruction(settings.lifecycle, db_only=db_only)
        raise SafetyError(f"refresh would replace {target} with prod's; run again with --yes to confirm")
    with guards_sql_file(settings.guards) as guards_sql:
        if not (bastion or settings.bastion["host"]):
            run_lifecycle_script(
                settings.lifecycle, run, db_only=db_only, break_lock=break_lock, guards_sql=guards_sql
            )
            return
        if break_lock:
            raise ConfigError(
                "--break-lock is not passed to a bastion yet: run recover or refresh on the bastion itself"
            )

        from checkpoint.bastion import load_bastion_settings, run_lifecycle_on_bastion

        target = load_bastion_settings(settings.bastion, settings.base_dir, target=bastion or "")
        run_lifecycle_on_bastion(settings.lifecycle, target, run, db_only=db_only, guards_sql=guards_sql)


def _provision(settings, run, rotate: bool, headed: bool) -> None:
    from checkpoint.provision import provision_agent

    provision_agent(settings, run, rotate=rotate, headed=True if headed else None)
    relink_agent_env(settings, run)


@task(help={"yes": "confirm that the sandbox database and documents will be replaced by the newest checkpoint",
            "bastion": BASTION_HELP, "break_lock": BREAK_LOCK_HELP, "json": JSON_HELP})
def rewind(c, yes=False, bastion=None, break_lock=False, json=False):
    """Restore the sandbox database and documents from the newest checkpoint, keeping the agent armed."""
    from checkpoint.checkpoints import rewind_sandbox

    execute("rewind", c.config,
            lambda settings, run: rewind_sandbox(settings, run, yes=yes, bastion=bastion, break_lock=break_lock),
            json_output=json)


@task(name="save", help={"bastion": BASTION_HELP, "json": JSON_HELP})
def checkpoint_save(c, bastion=None, json=False):
    """Save the sandbox database and documents as a new checkpoint; keep the newest checkpoints.keep."""
    from checkpoint.checkpoints import save_checkpoint

    execute("checkpoint.save", c.config, lambda settings, run: save_checkpoint(settings, run, bastion),
            json_output=json)


@task(name="list", help={"bastion": BASTION_HELP, "json": JSON_HELP})
def checkpoint_list(c, bastion=None, json=False):
    """List the checkpoints, oldest first, with their metadata."""
    from checkpoint.checkpoints import list_checkpoints

    def body(settings, run):
        checkpoints = list_checkpoints(settings, run, bastion)
        if run.on_outcome:
            for item in checkpoints:
                print(f"{item['checkpoint']}  taken {item['taken_at']}  database by {item['method']}"
                      f"  agent {item['agent_login']}  key {item['key_fingerprint']}")
        return {"checkpoints": checkpoints}, 0

    execute("checkpoint.list", c.config, body, json_output=json)


@task(name="drop", help={"name": "the checkpoint to delete, as checkpoint.list prints it",
                         "bastion": BASTION_HELP, "json": JSON_HELP})
def checkpoint_drop(c, name="", bastion=None, json=False):
    """Delete one checkpoint: its database copy and its documents snapshot."""
    from checkpoint.checkpoints import drop_checkpoint

    execute("checkpoint.drop", c.config, lambda settings, run: drop_checkpoint(settings, run, name, bastion),
            json_output=json)


checkpoints = Collection("checkpoint", checkpoint_save, checkpoint_list, checkpoint_drop)


# -- the built-in lab ---------------------------------------------------------------


@task(
    name="up",
    # No short flags: "-f" would read as Invoke's own config file option.
    auto_shortflags=False,
    help={
        "from_dump": "seed prod from this pg_dump -Fc archive instead of generated data",
        "documents": "seed prod's documents from this folder or .tar.gz (top folder documents/)",
        "json": JSON_HELP,
    },
)
def lab_up(c, from_dump=None, documents=None, json=False):
    """Start the local lab: PostgreSQL with prod and sandbox databases, and a Dolibarr stand-in."""
    from checkpoint.lab.lab import lab_up as start_lab

    dump = Path(from_dump).resolve() if from_dump else None
    tree = Path(documents).resolve() if documents else None
    execute(
        "lab.up", c.config, lambda settings, run: start_lab(settings.lab_dir, run, from_dump=dump, documents=tree),
        json_output=json, read_lab=False,
    )


@task(name="down", help={"purge": "also delete the lab's folder and all its data", "json": JSON_HELP})
def lab_down(c, purge=False, json=False):
    """Stop the local lab; its data stays unless --purge is given."""
    from checkpoint.lab.lab import lab_down as stop_lab

    execute(
        "lab.down", c.config, lambda settings, run: stop_lab(settings.lab_dir, run, purge=purge),
        json_output=json, read_lab=False,
    )


# -- guards ------------------------------------------------------------------------


@task(name="show", help={"json": JSON_HELP})
def guards_show(c, json=False):
    """List the guards that every refresh applies: the defaults, then checkpoint.guards.extra."""

    def body(settings, run):
        if run.on_outcome:
            for guard in settings.guards:
                print(f"{guard.name:24} {guard.origin:13} {guard.description}")
        return {"guards": [guard.as_dict() for guard in settings.guards]}, 0

    execute("guards.show", c.config, body, json_output=json)


@task(name="apply", help={"json": JSON_HELP})
def guards_apply(c, json=False):
    """Apply the guards to the live sandbox database in one transaction; ok or changed per guard.

    Connects to checkpoint.lifecycle.sandbox_db_uri from this machine, never through a bastion.
    """
    execute("guards.apply", c.config, apply_guards, json_output=json)


lab = Collection("lab", lab_up, lab_down)
guards = Collection("guards", guards_show, guards_apply)
ns = Collection(status, refresh, recover, provision, relink_env, reset, rewind, checkpoints, lab, guards)
ns.configure({"checkpoint": DEFAULTS})
