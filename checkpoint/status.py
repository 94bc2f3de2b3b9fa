"""``invoke status``: is the sandbox live, and is the agent armed? Read-only.

It touches no database and no cluster: one ``GET /`` and one ``GET /users/info``.
Each reason for "not armed" has its own exit code, listed in ``EXIT_CODES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checkpoint.agent_files import read_env_value
from checkpoint.dolibarr_api import KeyCheck, Reason, check_agent_key, probe_sandbox
from checkpoint.outcome import Outcome, Run
from checkpoint.settings import Settings, require_sandbox_url

EXIT_CODES: dict[Reason, int] = {
    Reason.ARMED: 0,
    Reason.SANDBOX_DOWN: 10,
    Reason.TIMEOUT: 11,
    Reason.NOT_DOLIBARR: 12,
    Reason.API_MODULE_OFF: 13,
    Reason.NO_ENV_FILE: 20,
    Reason.NO_KEY: 21,
    Reason.KEY_REJECTED: 22,
    Reason.MISSING_RIGHT: 23,
    Reason.WRONG_USER: 24,
}


@dataclass
class StatusReport:
    sandbox_url: str
    agent: str
    live: bool = False
    armed: bool = False
    reason: Reason = Reason.SANDBOX_DOWN
    detail: str = ""
    latency_seconds: float | None = None
    leftovers: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.reason]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sandbox_url": self.sandbox_url,
            "live": self.live,
            "armed": self.armed,
            "agent": self.agent,
            "reason": self.reason.value,
            "detail": self.detail,
            "latency_seconds": None if self.latency_seconds is None else round(self.latency_seconds, 3),
            "leftovers": self.leftovers,
            "checkpoint": self.checkpoint,
        }


def collect_status(settings: Settings, run: Run) -> StatusReport:
    """Fill a StatusReport, recording one outcome per check; never raises for a bad state."""
    url = require_sandbox_url(settings)
    report = StatusReport(sandbox_url=url, agent=settings.agent.login)

    probe = probe_sandbox(url, settings.http_timeout)
    report.live = probe.live
    report.latency_seconds = probe.latency_seconds
    if not probe.live:
        report.reason, report.detail = probe.reason or Reason.SANDBOX_DOWN, probe.detail
        run.record(Outcome.failed("probe_sandbox", probe.detail))
        return report
    run.record(Outcome.ok("probe_sandbox", f"{url} answered {probe.detail} in {probe.latency_seconds * 1000:.0f} ms"))

    key = _agent_key_from_env(settings, report, run)
    if key is None:
        return report

    check = check_agent_key(url, key, settings.agent.login, settings.http_timeout)
    _record_key_check(check, report, run)
    return report


def _agent_key_from_env(settings: Settings, report: StatusReport, run: Run) -> str | None:
    env_file = settings.agent.env_file
    if not env_file.exists():
        report.reason = Reason.NO_ENV_FILE
        report.detail = f"the agent's .env {env_file} does not exist: run invoke relink-env (or invoke provision)"
        run.record(Outcome.failed("read_agent_env", report.detail))
        return None

    key = read_env_value(env_file, settings.agent.env_key_var)
    if not key:
        report.reason = Reason.NO_KEY
        report.detail = f"{settings.agent.env_key_var} is not set in {env_file}: run invoke relink-env"
        run.record(Outcome.failed("read_agent_env", report.detail))
        return None

    run.record(Outcome.ok("read_agent_env", f"{settings.agent.env_key_var} is set in {env_file}"))
    return key


def _record_key_check(check: KeyCheck, report: StatusReport, run: Run) -> None:
    report.reason, report.detail = check.reason, check.detail
    report.armed = check.armed
    if check.reason in (Reason.NOT_DOLIBARR, Reason.API_MODULE_OFF, Reason.TIMEOUT, Reason.SANDBOX_DOWN):
        report.live = check.reason is Reason.API_MODULE_OFF
    outcome = Outcome.ok if check.armed else Outcome.failed
    run.record(outcome("verify_api_key", check.detail))
