"""The admin's Chromium, driven with Playwright's sync API, and its failure artifacts.

Every Playwright call that can wait goes through ``AdminBrowser``, which bounds the wait
by ``settings.http_timeout`` and translates Playwright's errors into ``BrowserError``
with a one-line message that names the page and what was expected.

A failed step saves a screenshot, taken after the password and API key fields on the
page were emptied. A Playwright trace is recorded and saved only when
``checkpoint.provision.save_trace`` is true, because Playwright 1.65 records every
request's headers in the trace, the admin's session cookie included. The session is
logged out on close, so that cookie no longer works. Tracing records form fills and
POST bodies too. So it starts only after the admin's login form was submitted, and it
pauses while a user is created, because the form carries the new user's password. It
stops for good before the agent's API key is typed (``seal_trace``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright

from checkpoint.exceptions import BrowserError, CheckpointError, ProvisionInterrupted
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


class AdminBrowser:
    """One Chromium with a fresh profile, holding the admin's Dolibarr session.

    ``launch`` starts it; ``close`` logs out and stops it, and is safe to call at any
    time. The base URL has no trailing slash; paths passed to ``goto`` start with ``/``.
    """

    def __init__(self, base_url: str, chromium: Path, timeout: float, artifacts_dir: Path, *, save_trace: bool = False):
        self.base_url = base_url
        self.chromium = chromium
        self.timeout = timeout
        self.artifacts_dir = artifacts_dir
        self.save_trace = save_trace
        # Set from a signal handler; the next browser action then raises ProvisionInterrupted.
        self.interrupted_by: int | None = None
        self._playwright = None
        self._browser = None
        self._context = None
        self.page = None
        self._tracing = False
        self._sealed = False
        self._trace_parts: list[Path] = []
        self._secrets: list[str] = []
        self._private_dir: Path | None = None
        self.logged_in = False

    # -- lifecycle ---------------------------------------------------------

    def launch(self, *, headless: bool) -> None:
        self.check_interrupted()
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
        self._trace_parts = []
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

    def check_interrupted(self) -> None:
        """Raise ProvisionInterrupted once a signal arrived, so no further page action starts."""
        if self.interrupted_by is None:
            return
        name = signal.Signals(self.interrupted_by).name
        raise ProvisionInterrupted(f"provision interrupted by {name}", signum=self.interrupted_by)

    # -- pages ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, target: str, expected: str) -> None:
        """Open a path or an absolute URL, and raise BrowserError unless it responds with 2xx."""
        self.check_interrupted()
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
        self.check_interrupted()
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
        self.check_interrupted()
        try:
            self.page.fill(selector, value)
        except PlaywrightError:
            raise BrowserError(f"cannot fill {what} ({selector}) on {describe_url(self.page.url)}") from None

    def select(self, selector: str, value: str, what: str) -> None:
        self.check_interrupted()
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
        """Record a trace from now on, when ``save_trace`` is on and the trace was not sealed."""
        if not self.save_trace or self._context is None or self._tracing or self._sealed:
            return
        try:
            self._context.tracing.start(screenshots=True, snapshots=True)
            self._tracing = True
        except PlaywrightError as error:
            log.warning("cannot start a Playwright trace: %s", _first_line(error))

    def pause_trace(self) -> None:
        """Stop recording and keep what was recorded so far in a private folder.

        Called before a page that carries a secret; ``start_trace`` records a new part
        afterwards. A failure moves the parts into the artifacts, and ``close`` deletes
        them otherwise.
        """
        if not self._tracing:
            return
        if self._private_dir is None:
            self._private_dir = Path(tempfile.mkdtemp(prefix="checkpoint-trace-"))
        part = self._private_dir / f"trace-{len(self._trace_parts) + 1}.zip"
        self._stop_trace(part)
        if part.exists():
            self._trace_parts.append(part)

    def seal_trace(self, secret: str) -> None:
        """Stop tracing for the rest of the run, keeping what was recorded so far.

        Called before ``secret`` is typed; a failure screenshot then masks it wherever
        the page shows it.
        """
        self.remember_secret(secret)
        self.pause_trace()
        self._sealed = True

    def remember_secret(self, secret: str) -> None:
        """Mask ``secret`` in the page before a failure screenshot."""
        self._secrets.append(secret)

    def save_failure_artifacts(self) -> Path | None:
        """Save a screenshot, and the trace parts when ``save_trace`` is on, into a new private folder.

        Returns None when no browser page exists. A failure while saving is logged and
        leaves whatever was saved.
        """
        if self.page is None:
            return None
        folder = self._new_artifacts_folder()
        self._blank_secret_fields()
        self._screenshot(folder / "screenshot.png")
        self.pause_trace()
        for part in self._trace_parts:
            shutil.move(str(part), folder / part.name)
        self._trace_parts = []
        for path in folder.iterdir():
            os.chmod(path, PRIVATE_MODE)
        log.info("saved the failure artifacts in %s", folder)
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
