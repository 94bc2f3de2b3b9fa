"""``invoke provision``: create or repair the agent's Dolibarr user through the web UI.

The steps run in order, each an idempotent primitive recorded by ``Run.step``: check
the prerequisites and that the sandbox responds, log the admin in, find or create the
agent, set its rights exactly, and keep a working API key in the key file. A failed
step saves a screenshot (and a Playwright trace when ``save_trace`` is on) and names
their folder in its message. The browser closes in every case.

SIGINT, SIGTERM and SIGHUP are caught while provision runs: the next browser action,
or the failure of the current one, ends the run with "provision interrupted by SIG..."
and exit code 128 plus the signal number.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from playwright.sync_api import Error as PlaywrightError

from checkpoint.dolibarr_api import probe_sandbox, session_cookie_name
from checkpoint.exceptions import BrowserError, CheckpointError, SafetyError
from checkpoint.lifecycle import on_signals
from checkpoint.outcome import Outcome, Run
from checkpoint.provision.api_key import ensure_agent_api_key
from checkpoint.provision.browser import AdminBrowser
from checkpoint.provision.login import configured_admin_login, open_admin_session
from checkpoint.provision.prerequisites import check_provision_prerequisites
from checkpoint.provision.rights import ensure_agent_rights
from checkpoint.provision.users import ensure_agent_user
from checkpoint.settings import Settings, require_sandbox_url

__all__ = ["check_provision_prerequisites", "provision_agent"]

log = logging.getLogger(__name__)

LAB_HINT = "For the built-in lab: invoke lab.up"


def provision_agent(settings: Settings, run: Run, *, rotate: bool = False, headed: bool | None = None) -> None:
    """Make the agent exist with exactly its configured rights and a stored, working API key.

    ``rotate`` replaces a key that still works. ``headed`` None shows a browser only
    when the secrets file has no admin password. Raises ``StepFailed`` after recording
    the first failed step.
    """
    base_url = require_sandbox_url(settings)
    run.step(check_prerequisites, settings, headed)

    browser = AdminBrowser(
        base_url, settings.chromium, settings.http_timeout, settings.artifacts_dir, save_trace=settings.save_trace
    )
    login = settings.agent.login
    with on_signals(functools.partial(_remember_signal, browser)):
        try:
            run.step(_saving_artifacts(browser, open_admin_session), browser, settings, headed)
            admin_login = configured_admin_login(settings.secrets_file)
            user = run.step(_saving_artifacts(browser, ensure_agent_user), browser, login, admin_login)
            user_id = user.data["user_id"]
            run.step(_saving_artifacts(browser, ensure_agent_rights), browser, user_id, login, settings.agent.rights)
            run.step(_saving_artifacts(browser, ensure_agent_api_key), browser, settings, user_id, rotate=rotate)
            if browser.interrupted_by is not None:
                # The signal arrived after the last browser action; the task still stops.
                run.step(stop_after_signal, browser)
        finally:
            browser.close()


def check_prerequisites(settings: Settings, headed: bool | None) -> Outcome:
    """Check the local prerequisites, then that the sandbox responds to HTTP, before Chromium starts."""
    warnings = check_provision_prerequisites(settings, headed)
    probe = probe_sandbox(settings.sandbox_url, settings.http_timeout)
    if not probe.live:
        return Outcome.failed("check_prerequisites", f"{probe.detail} {LAB_HINT}")
    _reject_prod_instance(settings)
    message = "; ".join([f"{settings.sandbox_url} responded with {probe.detail}", *warnings])
    return Outcome.ok("check_prerequisites", message)


def _reject_prod_instance(settings: Settings) -> None:
    """Reject provisioning when the sandbox reports prod's instance id, whatever its URL."""
    if not settings.prod_url:
        return
    sandbox_cookie = session_cookie_name(settings.sandbox_url, settings.http_timeout)
    if sandbox_cookie and sandbox_cookie == session_cookie_name(settings.prod_url, settings.http_timeout):
        raise SafetyError(
            f"the sandbox at {settings.sandbox_url} has the same instance unique id as prod at "
            f"{settings.prod_url} (same session cookie name): it is prod, or a copy that accepts prod's keys; "
            "give the sandbox its own instance unique id"
        )


def stop_after_signal(browser: AdminBrowser) -> Outcome:
    browser.check_interrupted()
    return Outcome.ok("stop_after_signal", "no signal arrived")


class _DriverClosedFilter(logging.Filter):
    """Drop asyncio's report of the Playwright driver's closed connection.

    A signal sent to the process group stops the Playwright driver too, and asyncio then
    logs the unread connection error, possibly after provision returned. The run
    already reports the interruption.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Future exception was never retrieved" not in record.getMessage()


DRIVER_CLOSED_FILTER = _DriverClosedFilter()


def _remember_signal(browser: AdminBrowser, signum: int) -> None:
    if browser.interrupted_by is None:
        browser.interrupted_by = signum
    logging.getLogger("asyncio").addFilter(DRIVER_CLOSED_FILTER)


def _saving_artifacts(browser: AdminBrowser, primitive: Callable[..., Outcome]) -> Callable[..., Outcome]:
    """Wrap ``primitive`` so that its failure saves artifacts and names them in the message.

    The wrapper keeps the primitive's name, which ``Run.step`` uses as the step name.
    A Playwright error that escaped translation becomes a BrowserError here. Once a
    signal arrived, any failure becomes ProvisionInterrupted, without artifacts, because
    the browser was stopped by the signal too or is about to be closed.
    """

    @functools.wraps(primitive)
    def wrapper(*args, **kwargs) -> Outcome:
        try:
            outcome = primitive(*args, **kwargs)
        except (CheckpointError, PlaywrightError) as error:
            browser.check_interrupted()
            if isinstance(error, CheckpointError):
                error.args = (_with_artifacts(browser, str(error)),)
                raise
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            message = f"the browser failed during {primitive.__name__}: {first_line}"
            raise BrowserError(_with_artifacts(browser, message)) from None
        if outcome.is_failed:
            browser.check_interrupted()
            outcome.message = _with_artifacts(browser, outcome.message)
        return outcome

    return wrapper


def _with_artifacts(browser: AdminBrowser, message: str) -> str:
    try:
        folder = browser.save_failure_artifacts()
    except (CheckpointError, OSError) as error:
        log.warning("cannot save the failure artifacts: %s", error)
        return f"{message} (no failure artifacts saved: {error})"
    if folder is None:
        return message
    return f"{message} (failure artifacts in {folder})"
