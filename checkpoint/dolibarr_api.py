"""Client for the few Dolibarr REST calls the tool makes, with precise failure reasons.

The key always travels in the ``DOLAPIKEY`` header, never in the URL, so it cannot
reach an access log or an error message. Dolibarr returns 200 with an HTML page when
its API module is off, so a status code alone proves nothing: a check passes only on
a JSON body of the expected shape.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

USERS_INFO_PATH = "/api/index.php/users/info"


class Reason(str, enum.Enum):
    """Reason codes for the agent key's state, as ``status --json`` prints them."""

    ARMED = "armed"
    NO_ENV_FILE = "no_env_file"
    NO_KEY = "no_key"
    KEY_REJECTED = "key_rejected"
    MISSING_RIGHT = "missing_right"
    WRONG_USER = "wrong_user"
    STALE_ENV = "stale_env"
    API_MODULE_OFF = "api_module_off"
    SANDBOX_DOWN = "sandbox_down"
    TIMEOUT = "timeout"
    NOT_DOLIBARR = "not_dolibarr"


@dataclass
class KeyCheck:
    """The result of ``GET /users/info`` with a key: armed or the reason why not."""

    reason: Reason
    detail: str
    latency_seconds: float | None = None
    http_status: int | None = None
    user: dict[str, Any] = field(default_factory=dict)

    @property
    def armed(self) -> bool:
        return self.reason is Reason.ARMED


@dataclass
class Probe:
    """Result of an HTTP probe of the sandbox's base URL."""

    live: bool
    detail: str
    latency_seconds: float | None = None
    http_status: int | None = None
    reason: Reason | None = None


def probe_sandbox(base_url: str, timeout: float) -> Probe:
    """Send ``GET /`` and report whether any server responds, with the latency."""
    started = time.monotonic()
    try:
        response = requests.get(base_url + "/", timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return Probe(False, f"no answer from {base_url} within {timeout:g} s", reason=Reason.TIMEOUT)
    except requests.ConnectionError:
        return Probe(False, f"cannot connect to {base_url}: is the sandbox running?", reason=Reason.SANDBOX_DOWN)
    except requests.RequestException as error:
        return Probe(False, f"request to {base_url} failed: {type(error).__name__}", reason=Reason.SANDBOX_DOWN)

    latency = time.monotonic() - started
    log.info("GET %s/ -> %s in %.3f s", base_url, response.status_code, latency)
    return Probe(True, f"HTTP {response.status_code}", latency, response.status_code)


def session_cookie_name(base_url: str, timeout: float) -> str | None:
    """Return the name of the ``DOLSESSID_*`` cookie that ``GET /`` sets, or None.

    Dolibarr names its session cookie ``DOLSESSID_`` + sha1('dolibarr' + instance unique
    id), so two URLs that set the same name are the same instance, or a copy that kept
    prod's id and therefore accepts prod's API keys.
    """
    try:
        response = requests.get(base_url + "/", timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return None
    names = [cookie.name for cookie in response.cookies if cookie.name.startswith("DOLSESSID_")]
    return names[0] if names else None


def check_agent_key(base_url: str, key: str, expected_login: str, timeout: float) -> KeyCheck:
    """Check that ``key`` authenticates ``GET /users/info`` as ``expected_login``."""
    url = base_url + USERS_INFO_PATH
    started = time.monotonic()
    try:
        response = requests.get(url, headers={"DOLAPIKEY": key, "Accept": "application/json"}, timeout=timeout)
    except requests.Timeout:
        return KeyCheck(Reason.TIMEOUT, f"no answer from {url} within {timeout:g} s")
    except requests.ConnectionError:
        return KeyCheck(Reason.SANDBOX_DOWN, f"cannot connect to {base_url}: is the sandbox running?")
    except requests.RequestException as error:
        return KeyCheck(Reason.SANDBOX_DOWN, f"request to {url} failed: {type(error).__name__}")

    latency = time.monotonic() - started
    log.info("GET %s -> %s in %.3f s", USERS_INFO_PATH, response.status_code, latency)
    check = _interpret_users_info(response, url, expected_login)
    check.latency_seconds = latency
    check.http_status = response.status_code
    return check


def _interpret_users_info(response: requests.Response, url: str, expected_login: str) -> KeyCheck:
    content_type = response.headers.get("Content-Type", "")
    body = _json_or_none(response)

    if response.status_code == 200 and body is None:
        if "text/html" in content_type and "Module Api must be enabled" in response.text:
            return KeyCheck(Reason.API_MODULE_OFF, "the API module is off on the sandbox: enable module API (Web services REST)")
        return KeyCheck(Reason.NOT_DOLIBARR, f"{url} answered 200 without JSON: is this a Dolibarr server?")

    if response.status_code == 401 and _is_dolibarr_error(body):
        return KeyCheck(
            Reason.KEY_REJECTED,
            "the sandbox rejected the agent's key (401): it was not found, or the user is disabled; run invoke provision",
        )
    if response.status_code == 403 and _is_dolibarr_error(body):
        return KeyCheck(
            Reason.MISSING_RIGHT,
            "the agent's key is valid but users/info is forbidden (403): grant right 251 (read users) "
            "or 342 (own user), or run invoke provision",
        )
    if response.status_code == 200 and isinstance(body, dict) and "login" in body:
        return _compare_login(body, expected_login)

    return KeyCheck(
        Reason.NOT_DOLIBARR,
        f"{url} answered HTTP {response.status_code} with an unexpected body: is this a Dolibarr server?",
    )


def _compare_login(body: dict[str, Any], expected_login: str) -> KeyCheck:
    login = str(body.get("login"))
    user = {key: body.get(key) for key in ("id", "login", "admin", "entity", "status")}
    if login != expected_login:
        return KeyCheck(
            Reason.WRONG_USER,
            f"the key authenticates user {login!r}, not the agent {expected_login!r}: run invoke provision",
            user=user,
        )
    return KeyCheck(Reason.ARMED, f"the key authenticates {login!r}", user=user)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_dolibarr_error(body: Any) -> bool:
    """Tell Dolibarr's ``{"error": {"code": ..., "message": ...}}`` apart from any other server's."""
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "code" in body["error"]
