"""Outcomes of idempotent primitives, and the run that collects them.

Every primitive reads the current state, changes only what differs, and returns an
``Outcome``: ``ok`` (already as wanted), ``changed`` (made so), ``failed`` or
``skipped``. A ``Run`` times each step and stops the task at the first failure.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Outcome:
    """The result of one step: its status, a one-line message, and data for ``--json``."""

    step: str
    status: Status
    message: str = ""
    duration: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, step: str, message: str = "", **data: Any) -> Outcome:
        return cls(step, Status.OK, message, data=data)

    @classmethod
    def changed(cls, step: str, message: str = "", **data: Any) -> Outcome:
        return cls(step, Status.CHANGED, message, data=data)

    @classmethod
    def failed(cls, step: str, message: str, **data: Any) -> Outcome:
        return cls(step, Status.FAILED, message, data=data)

    @classmethod
    def skipped(cls, step: str, message: str = "", **data: Any) -> Outcome:
        return cls(step, Status.SKIPPED, message, data=data)

    @property
    def is_failed(self) -> bool:
        return self.status is Status.FAILED

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "status": self.status.value,
            "message": self.message,
            "duration_seconds": round(self.duration, 3),
            **({"data": self.data} if self.data else {}),
        }


class StepFailed(Exception):
    """Raised by ``Run.step`` after recording a failed outcome, to stop the task."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.message)
        self.outcome = outcome


@dataclass
class Run:
    """The ordered outcomes of one task; ``on_outcome`` receives each as soon as it is known."""

    task: str
    outcomes: list[Outcome] = field(default_factory=list)
    on_outcome: Callable[[Outcome], None] | None = None

    def record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        if self.on_outcome:
            self.on_outcome(outcome)
        return outcome

    def step(self, primitive: Callable[..., Outcome], *args: Any, **kwargs: Any) -> Outcome:
        """Run ``primitive``, time it, record its outcome, and raise StepFailed if it failed.

        A ``CheckpointError`` raised by the primitive becomes a failed outcome named after
        the primitive; anything else is a bug and propagates with its traceback.
        """
        from checkpoint.exceptions import CheckpointError

        started = time.monotonic()
        try:
            outcome = primitive(*args, **kwargs)
        except CheckpointError as error:
            outcome = Outcome.failed(primitive.__name__, str(error), exit_code=error.exit_code)
        outcome.duration = time.monotonic() - started
        self.record(outcome)
        if outcome.is_failed:
            raise StepFailed(outcome)
        return outcome

    def skip(self, step: str, reason: str) -> Outcome:
        return self.record(Outcome.skipped(step, reason))

    @property
    def failed(self) -> bool:
        return any(outcome.is_failed for outcome in self.outcomes)

    def totals(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for outcome in self.outcomes:
            counts[outcome.status.value] += 1
        return counts
