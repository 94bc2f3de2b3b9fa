"""Run ``ops/sandbox/sandbox-lifecycle.sh`` and turn its phase lines into outcomes.

The script is the unit that keeps the sandbox old or new; this module only feeds it
settings as environment variables (never a secret: passwords stay in the pgpass
file it names) and reports each phase as a step of the run.
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
READ_ONLY_PHASES = {"preflight", "verify", "verify-dump"}
STDERR_TAIL_LINES = 20


def lifecycle_environment(lifecycle: LifecycleSettings) -> dict[str, str]:
    """Return the script's environment: this process's, plus the non-secret settings."""
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
    if lifecycle.checkpoint_dir:
        env["LIFECYCLE_CHECKPOINT_DIR"] = str(lifecycle.checkpoint_dir)
    env["LIFECYCLE_CHECKPOINT_KEEP"] = str(lifecycle.checkpoint_keep)
    return env


def run_lifecycle_script(
    lifecycle: LifecycleSettings,
    run: Run,
    *,
    db_only: bool,
    guards_sql: Path | None = None,
    arguments: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Run ``refresh --yes`` (or ``arguments``) and record one outcome per phase; raise StepFailed on failure.

    Returns every progress line as ``(phase, text)``. ``extra_env`` adds variables that
    are not settings, such as the checkpoint metadata.

    ``guards_sql`` names the file of guards SQL that the script sends before COMMIT.

    SIGINT or SIGTERM received here is forwarded to the script's process group, so its
    traps restore what it changed before this process exits.
    """
    if not lifecycle.script.is_file():
        raise ConfigError(f"lifecycle script {lifecycle.script} not found: set checkpoint.lifecycle.script")

    arguments = arguments or ["refresh", "--yes"] + (["--db-only"] if db_only else [])
    command = ["bash", str(lifecycle.script), *arguments]
    env = {**lifecycle_environment(lifecycle), **(extra_env or {})}
    if guards_sql:
        env["LIFECYCLE_GUARDS_SQL"] = str(guards_sql)
    log.info("running %s", " ".join(command))

    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    reader = threading.Thread(target=drain_stderr, args=(process.stderr, stderr_tail), daemon=True)
    reader.start()

    lines: list[tuple[str, str]] = []
    with on_signals(lambda signum: _signal_group(process, signum)):
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
        log.warning("lifecycle: %s", line)


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
        log.warning("received signal %d: stopping the lifecycle script", signum)
        self.handler(signum)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def describe_destruction(lifecycle: LifecycleSettings, *, db_only: bool) -> str:
    """Name what ``refresh --yes`` would replace, for the message shown without ``--yes``."""
    target = f"the sandbox database {_without_credentials(lifecycle.sandbox_db_uri) or '(not configured)'}"
    if not db_only:
        target += f" and the documents folder {lifecycle.sandbox_documents_dir or '(not configured)'}"
    return target


def _without_credentials(uri: str) -> str:
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1@", uri)
