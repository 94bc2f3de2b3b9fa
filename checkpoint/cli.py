"""Glue between Invoke tasks and the package: output mode, error handling, exit codes.

Every task body receives a ``Run``. Whatever happens, the task prints a recap (or one
JSON object with ``--json``) and exits with a code: 0 on success, the failed step's
code otherwise. A ``CheckpointError`` becomes one line on stderr, without a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from invoke import Exit

from checkpoint.exceptions import CheckpointError
from checkpoint.outcome import Outcome, Run, StepFailed
from checkpoint.settings import Settings, load_settings
from checkpoint.recap import print_json, print_recap, print_step, run_as_dict

INTERRUPTED_EXIT_CODE = 130


def configure_logging() -> None:
    """Log to stderr at ``CHECKPOINT_LOG_LEVEL`` (default WARNING)."""
    level = os.environ.get("CHECKPOINT_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _step_printer(task: str) -> Callable[[Outcome], None]:
    """Print the task's header before its first step, so bad input prints one line only."""
    printed_header = False

    def print_outcome(outcome: Outcome) -> None:
        nonlocal printed_header
        if not printed_header:
            print(f"TASK [{task}]", flush=True)
            printed_header = True
        print_step(outcome)

    return print_outcome


def execute(task: str, config: Any, body: Callable[[Settings, Run], Any], *, json_output: bool) -> Any:
    """Load the settings, run ``body`` inside a Run, print its recap, and exit non-zero on failure.

    ``body`` may return ``(extra, exit_code)`` to add fields to the JSON document and
    choose the exit code, as ``status`` does; any other return value means exit 0.
    """
    configure_logging()
    run = Run(task, on_outcome=None if json_output else _step_printer(task))

    extra: dict[str, Any] = {}
    exit_code = 0
    error_line = ""
    try:
        result = body(load_settings(config), run)
        if isinstance(result, tuple):
            extra, exit_code = result
    except StepFailed as failure:
        exit_code = int(failure.outcome.data.get("exit_code") or 1)
    except CheckpointError as error:
        exit_code = error.exit_code
        error_line = str(error)
    except KeyboardInterrupt:
        exit_code = INTERRUPTED_EXIT_CODE
        error_line = f"{task} interrupted"

    if json_output:
        document = run_as_dict(run, **extra)
        document["failed"] = exit_code != 0
        if error_line:
            document["error"] = error_line
        print_json(document)
    elif run.outcomes:
        print_recap(run)
    if error_line:
        print(f"error: {error_line}", file=sys.stderr, flush=True)
    if exit_code:
        raise Exit(code=exit_code)
    return extra
