"""``invoke provision``: create or repair the agent's Dolibarr user through the web UI.

The steps run in order, each an idempotent primitive recorded by ``Run.step``:
log the admin in, find or create the agent, set its rights exactly, and keep a
working API key in the key file. A failed step saves a screenshot and a Playwright
trace and names their folder in its message. The browser closes in every case.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from playwright.sync_api import Error as PlaywrightError

from checkpoint.exceptions import CheckpointError
from checkpoint.outcome import Outcome, Run
from checkpoint.provision.api_key import ensure_agent_api_key
from checkpoint.provision.browser import AdminBrowser, BrowserError
from checkpoint.provision.login import open_admin_session
from checkpoint.provision.rights import ensure_agent_rights
from checkpoint.provision.users import ensure_agent_user
from checkpoint.settings import Settings, require_sandbox_url

__all__ = ["provision_agent"]

log = logging.getLogger(__name__)


def provision_agent(settings: Settings, run: Run, *, rotate: bool = False, headed: bool | None = None) -> None:
    """Make the agent exist with exactly its configured rights and a stored, working API key.

    ``rotate`` replaces a key that still works. ``headed`` None shows a browser only
    when the secrets file has no admin password. Raises ``StepFailed`` after recording
    the first failed step.
    """
    browser = AdminBrowser(
        require_sandbox_url(settings), settings.chromium, settings.http_timeout, settings.artifacts_dir
    )
    login = settings.agent.login
    try:
        run.step(_saving_artifacts(browser, open_admin_session), browser, settings, headed)
        user = run.step(_saving_artifacts(browser, ensure_agent_user), browser, login)
        user_id = user.data["user_id"]
        run.step(_saving_artifacts(browser, ensure_agent_rights), browser, user_id, login, settings.agent.rights)
        run.step(_saving_artifacts(browser, ensure_agent_api_key), browser, settings, user_id, rotate=rotate)
    finally:
        browser.close()


def _saving_artifacts(browser: AdminBrowser, primitive: Callable[..., Outcome]) -> Callable[..., Outcome]:
    """Wrap ``primitive`` so that its failure saves artifacts and names them in the message.

    The wrapper keeps the primitive's name, which ``Run.step`` uses as the step name.
    A Playwright error that escaped translation becomes a BrowserError here.
    """

    @functools.wraps(primitive)
    def wrapper(*args, **kwargs) -> Outcome:
        try:
            outcome = primitive(*args, **kwargs)
        except CheckpointError as error:
            error.args = (_with_artifacts(browser, str(error)),)
            raise
        except PlaywrightError as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            message = f"the browser failed during {primitive.__name__}: {first_line}"
            raise BrowserError(_with_artifacts(browser, message)) from None
        if outcome.is_failed:
            outcome.message = _with_artifacts(browser, outcome.message)
        return outcome

    return wrapper


def _with_artifacts(browser: AdminBrowser, message: str) -> str:
    try:
        folder = browser.save_failure_artifacts()
    except (CheckpointError, OSError) as error:
        log.warning("cannot save the failure artifacts: %s", error)
        return f"{message} (no screenshot or trace saved: {error})"
    if folder is None:
        return message
    return f"{message} (screenshot and trace in {folder})"
