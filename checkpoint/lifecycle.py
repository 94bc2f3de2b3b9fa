"""Run ``ops/sandbox/sandbox-lifecycle.sh`` and turn its phase lines into outcomes.

The script is the unit that keeps the sandbox old or new. This module passes it the
settings as environment variables, never a secret, because passwords stay in the
pgpass file it names. Then it reports each phase as a step of the run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from checkpoint.exceptions import ConfigError
from checkpoint.outcome import Outcome, Run, StepFailed
from checkpoint.settings import LifecycleSettings

log = logging.getLogger(__name__)

PHASE_LINE = re.compile(r"^\S+ \[(?P<phase>[a-z][a-z-]*)\] (?P<text>.*)$")
DONE_TEXT = re.compile(r"^done in (?P<seconds>[0-9.]+)s(?:\s*(?P<rest>.*))?$")
READ_ONLY_PHASES = {"preflight", "verify", "verify-dump", "checkpoint-status", "checkpoint-list"}
STDERR_TAIL_LINES = 20


# Settings the kubectl transport cannot run without; the script checks the others.
KUBE_REQUIRED = ("prod_kube_context", "prod_namespace", "prod_db_workload", "prod_db_name", "prod_db_role",
                 "sandbox_kube_context", "sandbox_namespace", "sandbox_db_workload", "sandbox_db_name",
                 "sandbox_db_role", "sandbox_app_workload")


def lifecycle_environment(lifecycle: LifecycleSettings) -> dict[str, str]:
    """Return the script's environment: this process's, plus the non-secret settings."""
    if lifecycle.transport == "kubectl":
        return _kubectl_environment(lifecycle)

    required = {
        "checkpoint.lifecycle.prod_db_uri": lifecycle.prod_db_uri,
        "checkpoint.lifecycle.sandbox_db_uri": lifecycle.sandbox_db_uri,
        "checkpoint.lifecycle.prod_documents_dir": lifecycle.prod_documents_dir,
        "checkpoint.lifecycle.sandbox_documents_dir": lifecycle.sandbox_documents_dir,
    }
    for name, value in required.items():
        if not value:
            raise ConfigError(f"missing {name}: set it in invoke.yaml, or start the built-in lab with invoke lab.up")

    env = dict(os.environ)
    env.update(
        {
            "LIFECYCLE_TRANSPORT": lifecycle.transport,
            "PROD_DB_URI": lifecycle.prod_db_uri,
            "SANDBOX_DB_URI": lifecycle.sandbox_db_uri,
            "PROD_DOCUMENTS_DIR": str(lifecycle.prod_documents_dir),
            "SANDBOX_DOCUMENTS_DIR": str(lifecycle.sandbox_documents_dir),
        }
    )
    if lifecycle.pgpassfile:
        env["PGPASSFILE"] = str(lifecycle.pgpassfile)
    if lifecycle.work_dir:
        env["LIFECYCLE_WORK_DIR"] = str(lifecycle.work_dir)
    _add_common_environment(env, lifecycle)
    return env


def _kubectl_environment(lifecycle: LifecycleSettings) -> dict[str, str]:
    for key in KUBE_REQUIRED:
        if key.upper() not in lifecycle.kube_env:
            raise ConfigError(
                f"missing checkpoint.lifecycle.{key}: set it in invoke.yaml for the kubectl transport "
                "(see ops/sandbox/README.md)"
            )
    env = dict(os.environ)
    env.update(lifecycle.kube_env)
    env["LIFECYCLE_TRANSPORT"] = "kubectl"
    if lifecycle.work_dir:
        env["LIFECYCLE_WORK_DIR"] = str(lifecycle.work_dir)
    _add_common_environment(env, lifecycle)
    return env


def _add_common_environment(env: dict[str, str], lifecycle: LifecycleSettings) -> None:
    """Add the checkpoint settings and the dump level. With kubectl, the folder is a path in the sandbox's Dolibarr pod."""
    if lifecycle.checkpoint_dir:
        env["LIFECYCLE_CHECKPOINT_DIR"] = str(lifecycle.checkpoint_dir)
    env["LIFECYCLE_CHECKPOINT_KEEP"] = str(lifecycle.checkpoint_keep)
    env["LIFECYCLE_DUMP_COMPRESSION"] = str(lifecycle.dump_compression)


def run_lifecycle_script(
    lifecycle: LifecycleSettings,
    run: Run,
    *,
    db_only: bool,
    command: str = "refresh",
    break_lock: bool = False,
    guards_sql: Path | None = None,
    arguments: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Run ``refresh --yes`` (or ``recover``, or ``arguments``) and record one outcome per phase.

    Raises StepFailed on failure, and returns every progress line as ``(phase, text)``.
    ``extra_env`` adds variables that are not settings, such as the checkpoint metadata.

    ``guards_sql`` names the file of guards SQL that the script sends before COMMIT.

    SIGINT or SIGTERM received here is forwarded to the script's process group, so its
    traps restore what it changed before this process exits.
    """
    if not lifecycle.script.is_file():
        raise ConfigError(f"lifecycle script {lifecycle.script} not found: set checkpoint.lifecycle.script")

    if arguments is None:
        arguments = ["recover"] if command == "recover" else ["refresh", "--yes"] + (["--db-only"] if db_only else [])
        arguments += ["--break-lock"] if break_lock else []
    argv = ["bash", str(lifecycle.script), *arguments]
    env = {**lifecycle_environment(lifecycle), **(extra_env or {})}
    if guards_sql:
        env["LIFECYCLE_GUARDS_SQL"] = str(guards_sql)
    log.info("running %s", " ".join(argv))

    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=restore_default_signals,
    )
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    reader = threading.Thread(target=drain_stderr, args=(process.stderr, stderr_tail), daemon=True)
    reader.start()

    lines: list[tuple[str, str]] = []
    with on_signals(_ScriptInterrupter(process)):
        phases = follow_phases(process.stdout, run, lines)
        returncode = process.wait()
    reader.join(timeout=5)

    if returncode != 0:
        record_failure(run, phases, returncode, list(stderr_tail))
    return lines


def follow_phases(
    lines: Iterable[str], run: Run, progress: list[tuple[str, str]] | None = None
) -> dict[str, float]:
    """Record an outcome for every phase that ends; return the start times of open phases.

    A phase's message is the last progress line it printed, and its duration is
    measured here, because the script reports whole seconds only.
    """
    open_phases: dict[str, float] = {}
    last_lines: dict[str, str] = {}

    for raw in lines:
        line = raw.rstrip("\n")
        log.info("lifecycle: %s", line)
        match = PHASE_LINE.match(line)
        if not match:
            continue
        phase, text = match["phase"], match["text"]

        if text == "start":
            open_phases[phase] = time.monotonic()
        elif done := DONE_TEXT.match(text):
            started = open_phases.pop(phase, None)
            unchanged = phase in READ_ONLY_PHASES or done["rest"] == "unchanged"
            outcome = (Outcome.ok if unchanged else Outcome.changed)(phase, last_lines.pop(phase, ""))
            outcome.duration = time.monotonic() - started if started else float(done["seconds"])
            run.record(outcome)
        elif text.startswith("skipped"):
            open_phases.pop(phase, None)
            run.record(Outcome.skipped(phase, text.partition(":")[2].strip()))
        else:
            last_lines[phase] = text
            if progress is not None:
                progress.append((phase, text))
    return open_phases


def record_failure(run: Run, open_phases: dict[str, float], returncode: int, stderr_tail: list[str]) -> None:
    failed_lines = [line for line in stderr_tail if "] failed:" in line]
    if failed_lines:
        match = PHASE_LINE.match(failed_lines[-1])
        phase = match["phase"] if match else "lifecycle"
        message = failed_lines[-1].split("] failed:", 1)[1].strip()
    else:
        phase = next(reversed(open_phases), "lifecycle") if open_phases else "lifecycle"
        message = stderr_tail[-1] if stderr_tail else "no error message"

    outcome = Outcome.failed(phase, f"{message} (sandbox-lifecycle.sh exit code {returncode})", exit_code=returncode)
    if phase in open_phases:
        outcome.duration = time.monotonic() - open_phases[phase]
    run.record(outcome)
    raise StepFailed(outcome)


def drain_stderr(lines: Iterable[str], tail: deque[str]) -> None:
    """Log each stderr line of the script and keep the last ones for the failure message."""
    for raw in lines:
        line = raw.rstrip("\n")
        tail.append(line)
        # The recap shows the failure; CHECKPOINT_LOG_LEVEL=INFO shows every line as it comes.
        log.info("lifecycle: %s", line)


def restore_default_signals() -> None:
    """Give SIGINT, SIGTERM and SIGHUP their default action in a child before it starts.

    A process started in the background by a non-interactive shell (CI runners, nohup,
    ``cmd &``) inherits SIGINT ignored, and bash cannot trap a signal that was ignored
    when it started, so the script's interrupt trap would never run.
    """
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class on_signals:
    """Call ``handler(signum)`` for SIGINT, SIGTERM and SIGHUP while the block runs.

    Used to pass an interruption on to the lifecycle script, whose own traps then
    restore what it changed; the previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, handler: Callable[[int], None]):
        self.handler = handler
        self.previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        log.info("received signal %s", signal.Signals(signum).name)
        self.handler(signum)


class _ScriptInterrupter:
    """Pass the first signal to the script alone, and a repeated one to its whole group.

    The script's trap stops its children in order, puts back what it changed and
    reports the interruption. A signal sent to the whole group at once would kill
    those children first, so the script would report their failure instead. A second
    Ctrl-C is the user's way to stop a script whose cleanup hangs.
    """

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.signals_seen = 0

    def __call__(self, signum: int) -> None:
        self.signals_seen += 1
        try:
            if self.signals_seen == 1:
                os.kill(self.process.pid, signum)
            else:
                log.warning("second signal: terminating the lifecycle script's whole process group")
                os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


def describe_destruction(lifecycle: LifecycleSettings, *, db_only: bool) -> str:
    """Name what ``refresh --yes`` would replace, for the message shown without ``--yes``."""
    if lifecycle.transport == "kubectl":
        kube = lifecycle.kube_env
        target = (f"the sandbox database {kube.get('SANDBOX_DB_NAME', '(not configured)')} in "
                  f"{kube.get('SANDBOX_DB_WORKLOAD', '(not configured)')} (context "
                  f"{kube.get('SANDBOX_KUBE_CONTEXT', '(not configured)')})")
        documents = kube.get("SANDBOX_DOCUMENTS_PATH", "(not configured)")
    else:
        target = f"the sandbox database {_without_credentials(lifecycle.sandbox_db_uri) or '(not configured)'}"
        documents = lifecycle.sandbox_documents_dir or "(not configured)"
    if not db_only:
        target += f" and the documents folder {documents}"
    return target


def _without_credentials(uri: str) -> str:
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1@", uri)
