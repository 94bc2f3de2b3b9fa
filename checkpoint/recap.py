"""The user's view of a run: one line per step as it ends, then an Ansible-style recap.

Human output goes to stdout. ``--json`` replaces it with one JSON object at the end,
for machine readers such as the agent itself. Messages never contain secrets, because
the primitives that write them never receive a secret in a form they would print.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from checkpoint.outcome import Outcome, Run, Status

STATUS_WIDTH = 8
STEP_WIDTH = 26


def print_step(outcome: Outcome, stream: TextIO | None = None) -> None:
    """Print one finished step, for example ``changed  ensure_env_file  0.01s  created …``."""
    stream = stream or sys.stdout
    line = f"{outcome.status.value:<{STATUS_WIDTH}} {outcome.step:<{STEP_WIDTH}} {outcome.duration:6.2f}s"
    if outcome.message:
        line += f"  {outcome.message}"
    print(line, file=stream, flush=True)


def print_recap(run: Run, stream: TextIO | None = None) -> None:
    """Print the totals of a run, after its step lines."""
    stream = stream or sys.stdout
    totals = run.totals()
    elapsed = sum(outcome.duration for outcome in run.outcomes)
    counts = "  ".join(f"{status.value}={totals[status.value]}" for status in Status)
    print(f"\nRECAP {run.task}: {counts}  in {elapsed:.2f}s", file=stream, flush=True)


def run_as_dict(run: Run, **extra: Any) -> dict[str, Any]:
    return {
        "task": run.task,
        "failed": run.failed,
        **extra,
        "steps": [outcome.as_dict() for outcome in run.outcomes],
        "totals": run.totals(),
    }


def print_json(document: dict[str, Any], stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    print(json.dumps(document, indent=2, sort_keys=False, default=str), file=stream, flush=True)
