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


def execute(
    task: str, config: Any, body: Callable[[Settings, Run], Any], *, json_output: bool, read_lab: bool = True
) -> Any:
    """Load the settings, run ``body`` inside a Run, print its recap, and exit non-zero on failure.

    ``body`` may return ``(extra, exit_code)`` to add fields to the JSON document and
    choose the exit code, as ``status`` does. Any other return value means exit 0.
    """
    configure_logging()
    run = Run(task, on_outcome=None if json_output else _step_printer(task))

    extra: dict[str, Any] = {}
    exit_code = 0
    error_line = ""
    try:
        result = body(load_settings(config, read_lab=read_lab), run)
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


def guard_config_loading() -> None:
    """Turn Invoke's configuration errors into one line and exit code 2.

    Invoke loads the runtime config file (``-f``), the project config and the
    ``INVOKE_*`` environment variables after it imports ``tasks.py``. A YAML syntax
    error, a type it cannot cast, or a dict merged with a scalar then escapes as a
    traceback. Wrapping those loaders here is the only hook Invoke 2.2 offers a task
    module; each wrapper raises ``Exit``, which Invoke prints as one line.
    """
    from invoke.config import Config

    if getattr(Config, "_checkpoint_guarded", False):
        return
    for name in ("load_runtime", "load_project", "load_shell_env", "merge"):
        setattr(Config, name, _exit_on_config_error(getattr(Config, name), name))
    Config._checkpoint_guarded = True


def _exit_on_config_error(method: Callable, name: str) -> Callable:
    def guarded(self, *args, **kwargs):
        if name == "load_runtime":
            _require_runtime_file(self)
        try:
            return method(self, *args, **kwargs)
        except Exit:
            raise
        except Exception as error:  # noqa: BLE001 - any loader failure is bad configuration
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            if name == "load_shell_env" and isinstance(error, ValueError):
                detail = _describe_uncastable_variable(detail)
            if type(error).__name__ == "AmbiguousMergeError":
                # Its text quotes whole sections, which may contain values that must stay out of logs.
                detail = "a section was given a single value, or a single setting a section"
            raise Exit(f"error: invalid configuration ({type(error).__name__}: {detail}): "
                       "check the file given with -f, invoke.yaml and INVOKE_* variables", code=2) from None

    return guarded


def _describe_uncastable_variable(detail: str) -> str:
    """Name the INVOKE_* variables whose value the cast error quotes, so the user knows which to fix."""
    names = sorted(
        name for name, value in os.environ.items()
        if name.startswith("INVOKE_") and value and f"'{value}'" in detail
    )
    if not names:
        return detail
    return f"{', '.join(names)} cannot be read as the setting's type ({detail})"


def _require_runtime_file(config: Any) -> None:
    path = getattr(config, "_runtime_path", None)
    if path and not os.path.isfile(os.path.expanduser(path)):
        raise Exit(f"error: configuration file {path} not found: check the path given with -f", code=2)
