"""The admin's Chromium, driven with Playwright's sync API, and its failure artifacts.

Every Playwright call that can wait goes through ``AdminBrowser``, which bounds the wait
by ``settings.http_timeout`` and translates Playwright's errors into ``BrowserError``
with a one-line message that names the page and what was expected.

Tracing records form fills and POST bodies, so secrets are kept out of it: tracing
starts only after the admin's login form was submitted, and it stops for good before
the agent's API key is typed (``seal_trace``). A screenshot is taken only after the
password and API key fields on the page were emptied.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright

from checkpoint.exceptions import CheckpointError
from checkpoint.files import PRIVATE_MODE

log = logging.getLogger(__name__)

# Flags this tool needs for Debian's Chromium here: root without a user namespace
# sandbox, no GPU, and no background traffic to Google (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PRIVATE_FOLDER_MODE = 0o700
LOGIN_FORM = "form#login"
LOGOUT_LINK = 'a[href*="/user/logout.php"]'
# Error messages in Dolibarr 20 pages: the login page's error div, and the event
# messages that jnotify turns into popups once the page's JavaScript has run.
ERROR_SELECTORS = "div.error, .jnotify-message, div.warning"
SECRET_FIELDS = 'input[type="password"], input[name="password"], input[name="api_key"]'
# Runs only once tracing has stopped for good, so the secrets it receives are not recorded.
MASK_SECRETS_SCRIPT = """secrets => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const secret of secrets) node.nodeValue = node.nodeValue.split(secret).join('***');
    }
    for (const field of document.querySelectorAll('input, textarea')) {
        for (const secret of secrets) field.value = field.value.split(secret).join('***');
    }
}"""


class BrowserError(CheckpointError):
    """A page did not load or did not look as expected, or the browser failed."""


class AdminBrowser:
    """One Chromium with a fresh profile, holding the admin's Dolibarr session.

    ``launch`` starts it; ``close`` logs out and stops it, and is safe to call at any
    time. The base URL has no trailing slash; paths passed to ``goto`` start with ``/``.
    """

    def __init__(self, base_url: str, chromium: Path, timeout: float, artifacts_dir: Path):
        self.base_url = base_url
        self.chromium = chromium
        self.timeout = timeout
        self.artifacts_dir = artifacts_dir
        self._playwright = None
        self._browser = None
        self._context = None
        self.page = None
        self._tracing = False
        self._sealed = False
        self._sealed_trace: Path | None = None
        self._secrets: list[str] = []
        self._private_dir: Path | None = None
        self.logged_in = False

    # -- lifecycle ---------------------------------------------------------

    def launch(self, *, headless: bool) -> None:
        if not self.chromium.is_file():
            raise BrowserError(
                f"Chromium not found at {self.chromium}: install the Debian package chromium, "
                "or set checkpoint.provision.chromium"
            )
        try:
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=str(self.chromium),
                args=CHROMIUM_ARGS,
                headless=headless,
                timeout=self.timeout * 1000,
            )
            self._context = self._browser.new_context()
            self._context.set_default_timeout(self.timeout * 1000)
            self._context.set_default_navigation_timeout(self.timeout * 1000)
            self.page = self._context.new_page()
        except PlaywrightError as error:
            self.close()
            raise BrowserError(f"cannot start Chromium {self.chromium}: {_first_line(error)}") from None
        log.info("started Chromium %s (%s)", self.chromium, "headless" if headless else "headed")

    def close(self) -> None:
        """Log out, then stop the browser; errors here are logged, never raised."""
        if self.logged_in:
            self._log_out()
        for closable in (self._context, self._browser):
            if closable is None:
                continue
            try:
                closable.close()
            except PlaywrightError as error:
                log.debug("closing the browser failed: %s", _first_line(error))
        if self._playwright is not None:
            try:
                self._playwright.stop()
            except PlaywrightError as error:
                log.debug("stopping Playwright failed: %s", _first_line(error))
        self._playwright = self._browser = self._context = self.page = None
        self._tracing = False
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def _log_out(self) -> None:
        """End the admin's session, so a session cookie in a saved trace no longer works."""
        self.logged_in = False
        try:
            links = self.hrefs(LOGOUT_LINK)
            if links:
                self.page.goto(links[0], timeout=self.timeout * 1000)
                log.info("logged out of %s", self.base_url)
        except (PlaywrightError, CheckpointError) as error:
            log.warning("logging out of %s failed (%s); the session expires on its own", self.base_url, error)

    # -- pages ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, target: str, expected: str) -> None:
        """Open a path or an absolute URL, and raise BrowserError unless it responds with 2xx."""
        url = target if "://" in target else self.url(target)
        try:
            response = self.page.goto(url, wait_until="load")
        except PlaywrightTimeoutError:
            raise BrowserError(f"timed out after {self.timeout:g} s loading {describe_url(url)}: expected {expected}") from None
        except PlaywrightError as error:
            raise BrowserError(f"cannot load {describe_url(url)} ({_first_line(error)}): expected {expected}") from None
        if response is not None and response.status >= 400:
            raise BrowserError(f"{describe_url(url)} responded with HTTP {response.status}: expected {expected}")

    def submit(self, button: str, expected: str) -> None:
        """Click a submit button and wait until the page it leads to has loaded."""
        where = describe_url(self.page.url)
        try:
            with self.page.expect_navigation(wait_until="load"):
                self.page.click(button)
        except PlaywrightTimeoutError:
            raise BrowserError(
                f"timed out after {self.timeout:g} s submitting {button} on {where}: expected {expected}"
            ) from None
        except PlaywrightError as error:
            raise BrowserError(f"submitting {button} on {where} failed ({_first_line(error)}): expected {expected}") from None

    def require(self, selector: str, expected: str) -> None:
        """Raise BrowserError unless ``selector`` is on the current page."""
        if self.count(selector):
            return
        if self.logged_in and self.count(LOGIN_FORM):
            raise BrowserError(
                f"{describe_url(self.page.url)} showed the login form: the admin's session ended; run again"
            )
        details = self.error_text()
        suffix = f"; the page says: {details}" if details else ""
        raise BrowserError(f"{describe_url(self.page.url)} has no {selector}: expected {expected}{suffix}")

    def count(self, selector: str) -> int:
        try:
            return self.page.locator(selector).count()
        except PlaywrightError as error:
            raise BrowserError(f"cannot read {describe_url(self.page.url)} ({_first_line(error)})") from None

    def fill(self, selector: str, value: str, what: str) -> None:
        """Type ``value`` into a field; the message names ``what``, never the value."""
        try:
            self.page.fill(selector, value)
        except PlaywrightError:
            raise BrowserError(f"cannot fill {what} ({selector}) on {describe_url(self.page.url)}") from None

    def select(self, selector: str, value: str, what: str) -> None:
        try:
            self.page.select_option(selector, value)
        except PlaywrightError as error:
            raise BrowserError(
                f"cannot set {what} ({selector}) to {value!r} on {describe_url(self.page.url)}: {_first_line(error)}"
            ) from None

    def value(self, selector: str) -> str:
        try:
            return self.page.input_value(selector)
        except PlaywrightError as error:
            raise BrowserError(f"cannot read {selector} on {describe_url(self.page.url)}: {_first_line(error)}") from None

    def hrefs(self, selector: str) -> list[str]:
        """Return the absolute URLs of the links matching ``selector``, in page order."""
        try:
            return self.page.eval_on_selector_all(selector, "links => links.map(link => link.href)")
        except PlaywrightError as error:
            raise BrowserError(f"cannot read links on {describe_url(self.page.url)}: {_first_line(error)}") from None

    def links(self, selector: str) -> list[tuple[str, str]]:
        """Return ``(href, text)`` of the links matching ``selector``, text stripped."""
        script = "links => links.map(link => [link.href, link.textContent.trim()])"
        try:
            return [tuple(pair) for pair in self.page.eval_on_selector_all(selector, script)]
        except PlaywrightError as error:
            raise BrowserError(f"cannot read links on {describe_url(self.page.url)}: {_first_line(error)}") from None

    def error_text(self) -> str:
        """Return the page's visible error and warning messages on one line, or ''."""
        try:
            texts = self.page.eval_on_selector_all(ERROR_SELECTORS, "nodes => nodes.map(node => node.textContent)")
        except PlaywrightError:
            return ""
        return " | ".join(" ".join(text.split()) for text in texts if text.strip())[:300]

    # -- tracing and artifacts ---------------------------------------------

    def start_trace(self) -> None:
        if self._context is None or self._tracing or self._sealed:
            return
        try:
            self._context.tracing.start(screenshots=True, snapshots=True)
            self._tracing = True
        except PlaywrightError as error:
            log.warning("cannot start a Playwright trace: %s", _first_line(error))

    def seal_trace(self, secret: str) -> None:
        """Stop tracing for the rest of the run, keeping what was recorded so far.

        Called before ``secret`` is typed; a failure screenshot then masks it wherever
        the page shows it. The trace waits in a private folder until a failure moves it
        into the artifacts, and ``close`` deletes it otherwise.
        """
        self._sealed = True
        self._secrets.append(secret)
        if not self._tracing:
            return
        self._private_dir = Path(tempfile.mkdtemp(prefix="checkpoint-trace-"))
        self._sealed_trace = self._private_dir / "trace.zip"
        self._stop_trace(self._sealed_trace)

    def save_failure_artifacts(self) -> Path | None:
        """Save a screenshot and a trace into a new private folder and return it.

        Returns None when no browser page exists. A failure while saving is logged and
        leaves whatever was saved.
        """
        if self.page is None:
            return None
        folder = self._new_artifacts_folder()
        self._blank_secret_fields()
        if not self._tracing and not self._sealed:
            # Nothing recorded yet: a short trace still keeps the failed page's DOM.
            self.start_trace()
        self._screenshot(folder / "screenshot.png")
        if self._tracing:
            self._stop_trace(folder / "trace.zip")
        elif self._sealed_trace is not None and self._sealed_trace.exists():
            shutil.move(str(self._sealed_trace), folder / "trace.zip")
        for path in folder.iterdir():
            os.chmod(path, PRIVATE_MODE)
        log.info("saved a screenshot and a trace of the failure in %s", folder)
        return folder

    def _new_artifacts_folder(self) -> Path:
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for attempt in range(100):
            suffix = f"-{attempt}" if attempt else ""
            folder = self.artifacts_dir / f"{stamp}{suffix}-provision"
            try:
                folder.mkdir(mode=PRIVATE_FOLDER_MODE)
            except FileExistsError:
                continue
            os.chmod(folder, PRIVATE_FOLDER_MODE)
            return folder
        raise BrowserError(f"cannot create a new artifacts folder in {self.artifacts_dir}: remove old ones")

    def _blank_secret_fields(self) -> None:
        """Empty the password and key fields and mask each known secret in the page's text."""
        try:
            self.page.eval_on_selector_all(SECRET_FIELDS, "fields => fields.forEach(field => { field.value = ''; })")
            if self._secrets:
                self.page.evaluate(MASK_SECRETS_SCRIPT, self._secrets)
        except PlaywrightError as error:
            log.debug("cannot blank the secret fields before the screenshot: %s", _first_line(error))

    def _screenshot(self, path: Path) -> None:
        try:
            self.page.screenshot(path=str(path), full_page=True, timeout=self.timeout * 1000)
        except PlaywrightError as error:
            log.warning("cannot save a screenshot to %s: %s", path, _first_line(error))

    def _stop_trace(self, path: Path) -> None:
        self._tracing = False
        try:
            self._context.tracing.stop(path=str(path))
            os.chmod(path, PRIVATE_MODE)
        except (PlaywrightError, OSError) as error:
            log.warning("cannot save the Playwright trace to %s: %s", path, error)


def describe_url(url: str) -> str:
    """Return ``url`` without the base and without its CSRF ``token`` parameter."""
    parts = urlsplit(url)
    query = urlencode([(name, value) for name, value in parse_qsl(parts.query) if name != "token"])
    return urlunsplit(("", "", parts.path, query, "")) or url


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
