"""Log the admin in to the sandbox's Dolibarr, headless from the secrets file or by hand.

The secrets file is a dotenv file with ``DOLIBARR_ADMIN_PASSWORD`` and, optionally,
``DOLIBARR_ADMIN_LOGIN`` (default ``admin``). Without a password, a headed browser
opens at the login page and a person logs in. The password is typed into the form
and goes nowhere else: not into a message, a log line or a trace.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from playwright.sync_api import Error as PlaywrightError

from checkpoint.exceptions import BrowserError, ConfigError, LoginError
from checkpoint.outcome import Outcome
from checkpoint.provision.browser import LOGIN_FORM, LOGOUT_LINK, AdminBrowser, describe_url
from checkpoint.provision.prerequisites import PASSWORD_VAR, check_admin_login_possible
from checkpoint.settings import Settings

log = logging.getLogger(__name__)

LOGIN_PAGE = "/index.php"
LOGIN_VAR = "DOLIBARR_ADMIN_LOGIN"
DEFAULT_ADMIN_LOGIN = "admin"
# The message of Dolibarr 20 (English) when the login or the password is wrong.
BAD_CREDENTIALS_TEXT = "Bad value for login or password"
HEADED_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class AdminCredentials:
    login: str
    password: str = field(repr=False)


def read_admin_credentials(secrets_file: Path) -> AdminCredentials | None:
    """Return the admin's login and password from the dotenv file, or None without a password."""
    if not secrets_file.exists():
        return None
    try:
        values = dotenv_values(secrets_file)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"secrets file {secrets_file} is unreadable ({error}): check its owner and mode") from None

    password = values.get(PASSWORD_VAR) or ""
    if not password:
        return None
    login = (values.get(LOGIN_VAR) or "").strip() or DEFAULT_ADMIN_LOGIN
    return AdminCredentials(login, password)


def configured_admin_login(secrets_file: Path) -> str | None:
    """Return the login that provision logs in with, or None when a person logs in by hand."""
    credentials = read_admin_credentials(secrets_file)
    return credentials.login if credentials else None


def open_admin_session(browser: AdminBrowser, settings: Settings, headed: bool | None = None) -> Outcome:
    """Start Chromium and log the admin in, from the secrets file or by a person's hand.

    ``headed`` None shows a browser only when the secrets file has no password; True
    always shows one; False never does, so a missing password fails at once.
    """
    check_admin_login_possible(settings.secrets_file, headed)
    credentials = read_admin_credentials(settings.secrets_file)
    show_browser = headed if headed is not None else credentials is None

    browser.launch(headless=not show_browser)
    browser.goto(LOGIN_PAGE, "Dolibarr's login page")
    browser.require(LOGIN_FORM, "Dolibarr's login form (form#login)")

    if credentials is None:
        _wait_for_person(browser, settings)
        return Outcome.ok("open_admin_session", f"logged in to {settings.sandbox_url} by hand")

    _submit_credentials(browser, credentials)
    _check_login_result(browser, credentials, settings.secrets_file)
    return Outcome.ok("open_admin_session", f"logged in to {settings.sandbox_url} as {credentials.login}")


def _submit_credentials(browser: AdminBrowser, credentials: AdminCredentials) -> None:
    browser.require("#username", "the login field #username")
    browser.require("#password", "the password field #password")
    browser.fill("#username", credentials.login, "the login")
    browser.fill("#password", credentials.password, "the password")
    try:
        browser.submit(f'{LOGIN_FORM} [type="submit"]', "the home page or a login error")
    finally:
        # Tracing begins after the form has left, so the trace never contains the password.
        browser.start_trace()


def _check_login_result(browser: AdminBrowser, credentials: AdminCredentials, secrets_file: Path) -> None:
    logged_in = browser.count(LOGOUT_LINK) and not browser.count(LOGIN_FORM)
    if logged_in:
        browser.logged_in = True
        log.info("logged in to %s as %s", browser.base_url, credentials.login)
        return

    message = browser.error_text()
    if BAD_CREDENTIALS_TEXT.lower() in message.lower():
        raise LoginError(
            f"login to {browser.base_url} as {credentials.login!r} failed: Dolibarr responded "
            f"{BAD_CREDENTIALS_TEXT!r}; fix {LOGIN_VAR} or {PASSWORD_VAR} in {secrets_file}"
        )
    suffix = f": the page says: {message}" if message else ""
    raise BrowserError(
        f"login to {browser.base_url} as {credentials.login!r} showed neither the home page nor a "
        f"login error at {describe_url(browser.page.url)}{suffix}"
    )


def _wait_for_person(browser: AdminBrowser, settings: Settings) -> None:
    """Wait, bounded by ``headed_login_timeout``, until the page has a logout link and no login form."""
    timeout = settings.headed_login_timeout
    # The person at the screen must know what to do; stderr keeps --json output clean.
    print(f"Log in to {settings.sandbox_url} in the browser window (waiting up to {timeout:g} s).", file=sys.stderr)
    deadline = time.monotonic() + timeout
    while not _person_logged_in(browser, settings):
        if time.monotonic() > deadline:
            raise BrowserError(
                f"timed out after {timeout:g} s waiting for a person to log in at {settings.sandbox_url}: "
                f"log in faster, raise checkpoint.provision.headed_login_timeout, or put {PASSWORD_VAR} "
                f"in {settings.secrets_file}"
            )
        time.sleep(HEADED_POLL_SECONDS)
    browser.logged_in = True
    browser.start_trace()
    log.info("a person logged in to %s", settings.sandbox_url)


def _person_logged_in(browser: AdminBrowser, settings: Settings) -> bool:
    if browser.page.is_closed():
        raise BrowserError(f"the browser window closed before a person logged in at {settings.sandbox_url}: run again")
    try:
        return bool(browser.page.locator(LOGOUT_LINK).count()) and not browser.page.locator(LOGIN_FORM).count()
    except PlaywrightError:
        # The page is navigating, which is what a person logging in does.
        return False
