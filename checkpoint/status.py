"""``invoke status``: is the sandbox live, the agent armed, the sandbox guarded and prod closed to the agent?

Read-only. It sends ``GET /`` and ``GET /users/info`` to the sandbox and reads the
guards in one read-only transaction on the sandbox database. When a prod URL is set,
it tries the agent's key once on prod's ``users/info``. With the kubectl transport, a
few ``kubectl get`` look for changes that a killed refresh left on the cluster. Each
reason for "not armed" has its own exit code in ``EXIT_CODES``, and
``GUARD_EXIT_CODES`` lists the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checkpoint.agent_files import read_env_value
from checkpoint.dolibarr_api import KeyCheck, Reason, check_agent_key, probe_sandbox
from checkpoint.guards_live import check_guards
from checkpoint.kube_leftovers import LeftoverCheckFailed, cluster_leftovers
from checkpoint.outcome import Outcome, Run
from checkpoint.settings import Settings, require_sandbox_url

# Written by sandbox-lifecycle.sh's local transport while it syncs the documents.
DOCUMENTS_SYNC_MARKER = ".sandbox-lifecycle-sync-incomplete"

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
    Reason.STALE_ENV: 25,
}

# Exit codes of the safety checks. Prod accepting the agent's key wins over every
# other code. A guard not in effect, or guards that could not be read, come after
# the agent's codes. A check that does not apply changes nothing: no prod URL, or
# no sandbox database setting.
PROD_ACCEPTS_KEY = 31
GUARDS_OFF = 30
GUARDS_UNKNOWN = 32
GUARD_EXIT_CODES = {
    "a guard is not in effect": GUARDS_OFF,
    "prod accepts the agent's key": PROD_ACCEPTS_KEY,
    "the guards could not be read": GUARDS_UNKNOWN,
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
    # None: not checked, for the reason in the detail.
    guarded: bool | None = None
    guards_not_in_effect: list[str] = field(default_factory=list)
    guards_detail: str = ""
    guards_unreadable: bool = False
    isolated: bool | None = None
    isolated_detail: str = ""
    checkpoint: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        if self.isolated is False:
            return PROD_ACCEPTS_KEY
        if EXIT_CODES[self.reason]:
            return EXIT_CODES[self.reason]
        if self.guarded is False:
            return GUARDS_OFF
        if self.guards_unreadable:
            return GUARDS_UNKNOWN
        return 0

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
            "guarded": self.guarded,
            "guards_not_in_effect": self.guards_not_in_effect,
            "guards_detail": self.guards_detail,
            "isolated": self.isolated,
            "isolated_detail": self.isolated_detail,
            "checkpoint": self.checkpoint,
        }


def collect_status(settings: Settings, run: Run) -> StatusReport:
    """Fill a StatusReport, recording one outcome per check; never raises for a bad state."""
    url = require_sandbox_url(settings)
    report = StatusReport(sandbox_url=url, agent=settings.agent.login)
    _check_agent(settings, url, report, run)
    _check_guarded(settings, report, run)
    _check_isolated(settings, report, run)
    _check_leftovers(settings, report, run)
    return report


def _check_agent(settings: Settings, url: str, report: StatusReport, run: Run) -> None:
    probe = probe_sandbox(url, settings.http_timeout)
    report.live = probe.live
    report.latency_seconds = probe.latency_seconds
    if not probe.live:
        report.reason, report.detail = probe.reason or Reason.SANDBOX_DOWN, probe.detail
        run.record(Outcome.failed("probe_sandbox", probe.detail))
        return
    run.record(Outcome.ok("probe_sandbox", f"{url} answered {probe.detail} in {probe.latency_seconds * 1000:.0f} ms"))

    key = _agent_key_from_env(settings, report, run)
    if key is None:
        return

    check = check_agent_key(url, key, settings.agent.login, settings.http_timeout)
    _record_key_check(check, report, run)


def _check_guarded(settings: Settings, report: StatusReport, run: Run) -> None:
    if not settings.lifecycle.sandbox_db_uri:
        report.guards_detail = "not checked: checkpoint.lifecycle.sandbox_db_uri is not set"
        run.skip("guarded", report.guards_detail)
        return
    # NOTE: the check connects to the sandbox database from this machine, also when
    # refresh runs on a bastion. A database reachable only from there reads as unknown.
    check = check_guards(settings)
    report.guarded = check.guarded
    report.guards_not_in_effect = check.not_in_effect
    report.guards_detail = check.detail
    report.guards_unreadable = not check.checked
    outcome = Outcome.ok if check.guarded else Outcome.failed
    run.record(outcome("guarded", check.detail))


def _check_isolated(settings: Settings, report: StatusReport, run: Run) -> None:
    if not settings.prod_url:
        report.isolated_detail = "not checked: checkpoint.sandbox.prod_url is not set"
        run.skip("isolated", report.isolated_detail)
        return
    key = read_env_value(settings.agent.env_file, settings.agent.env_key_var) if settings.agent.env_file.exists() else ""
    if not key:
        report.isolated_detail = "not checked: the agent has no key to try on prod"
        run.skip("isolated", report.isolated_detail)
        return

    check = check_agent_key(settings.prod_url, key, settings.agent.login, settings.http_timeout)
    if check.reason is Reason.KEY_REJECTED:
        report.isolated, report.isolated_detail = True, f"prod {settings.prod_url} rejects the agent's key (401)"
        run.record(Outcome.ok("isolated", report.isolated_detail))
    elif check.reason in (Reason.ARMED, Reason.WRONG_USER, Reason.MISSING_RIGHT):
        report.isolated = False
        report.isolated_detail = (
            f"prod {settings.prod_url} accepts the agent's key (HTTP {check.http_status}): the agent can reach prod; "
            "give the sandbox another instance unique id than prod's, then run invoke reset --yes"
        )
        run.record(Outcome.failed("isolated", report.isolated_detail))
    else:
        report.isolated_detail = f"unknown: prod's answer proves nothing ({check.detail})"
        run.record(Outcome.skipped("isolated", report.isolated_detail))


def _check_leftovers(settings: Settings, report: StatusReport, run: Run) -> None:
    """Record what a killed refresh left behind; leftovers do not change the exit code."""
    if settings.lifecycle.transport != "kubectl":
        _check_documents_marker(settings, report, run)
        return
    try:
        report.leftovers = cluster_leftovers(settings.lifecycle)
    except LeftoverCheckFailed as error:
        run.record(Outcome.failed("check_leftovers", f"{error}; check checkpoint.lifecycle.kubeconfig and the contexts"))
        return
    if report.leftovers:
        run.record(Outcome.failed("check_leftovers", "; ".join(report.leftovers)))
    else:
        run.record(Outcome.ok("check_leftovers", "no paused self-heal, scale-down or refresh lock left on the cluster"))


def _check_documents_marker(settings: Settings, report: StatusReport, run: Run) -> None:
    """Report a documents sync that an interrupted refresh left unfinished (local transport)."""
    folder = settings.lifecycle.sandbox_documents_dir
    if folder is None:
        return
    marker = folder / DOCUMENTS_SYNC_MARKER
    try:
        started = marker.read_text().strip()
    except FileNotFoundError:
        return
    except OSError as error:
        started = f"unknown ({error.strerror})"
    report.leftovers.append(
        f"documents sync incomplete since {started}: the sandbox database is new, its documents partly synced; "
        "run invoke refresh --yes"
    )
    run.record(Outcome.failed("check_leftovers", report.leftovers[-1]))


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

    url = read_env_value(env_file, settings.agent.env_url_var)
    if url is not None and url.rstrip("/") != settings.sandbox_url:
        report.reason = Reason.STALE_ENV
        report.detail = (
            f"{settings.agent.env_url_var} in {env_file} is {url}, not the sandbox {settings.sandbox_url}: "
            "run invoke relink-env"
        )
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
