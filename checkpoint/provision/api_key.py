"""Keep the agent's API key working: reuse the stored one, or set, verify and store a new one.

A new key is made here with ``secrets`` and typed into the user's edit form, which is
then saved whole, as a browser does, because Dolibarr 20's update action reads every
field from the POST. The key file is written only after the REST API accepted the new
key as the agent, so it never contains a partial or unverified key.
"""

from __future__ import annotations

import logging
import secrets
import string

from checkpoint.agent_files import read_key_file, write_key_file
from checkpoint.dolibarr_api import Reason, check_agent_key
from checkpoint.exceptions import CheckpointError, ConfigError
from checkpoint.outcome import Outcome
from checkpoint.provision.browser import AdminBrowser, BrowserError
from checkpoint.provision.users import UPDATE_FORM, USER_CARD
from checkpoint.settings import Settings

log = logging.getLogger(__name__)

KEY_LENGTH = 32
KEY_ALPHABET = string.ascii_letters + string.digits
# Check results that a new key can cure; any other (API module off, sandbox down,
# missing right) would make the new key fail too.
REPLACEABLE = {Reason.KEY_REJECTED, Reason.WRONG_USER}


class KeyNotAcceptedError(CheckpointError):
    """The sandbox did not accept the new key as the agent's."""


def generate_api_key() -> str:
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def ensure_agent_api_key(browser: AdminBrowser, settings: Settings, user_id: int, *, rotate: bool = False) -> Outcome:
    """Keep a stored key that authenticates the agent (ok), or set and store a new one (changed)."""
    agent = settings.agent
    reason = "rotation was requested" if rotate else _why_stored_key_unusable(settings)
    if reason is None:
        return Outcome.ok("ensure_agent_api_key", f"the key in {agent.key_file} authenticates {agent.login}")

    log.info("setting a new API key for %s: %s", agent.login, reason)
    key = generate_api_key()
    set_api_key(browser, user_id, agent.login, key)

    check = check_agent_key(settings.sandbox_url, key, agent.login, settings.http_timeout)
    if not check.armed:
        raise KeyNotAcceptedError(
            f"the new key saved for {agent.login} does not work ({check.detail}); "
            f"{agent.key_file} was left unchanged"
        )
    write_key_file(agent.key_file, key)
    return Outcome.changed(
        "ensure_agent_api_key", f"set a new API key for {agent.login} ({reason}) and wrote it to {agent.key_file}"
    )


def set_api_key(browser: AdminBrowser, user_id: int, login: str, key: str) -> None:
    """Type ``key`` into the user's edit form and save the whole form."""
    # From here on, pages and requests carry the new key, so the trace stops for good.
    browser.seal_trace(key)
    browser.goto(f"{USER_CARD}?id={user_id}&action=edit", f"the edit form of user {login}")
    browser.require(UPDATE_FORM, f"the edit form {UPDATE_FORM} of user {login}")
    field = f'{UPDATE_FORM} [name="api_key"]'
    browser.require(field, "the api_key field; enable the API module (Web services REST) in Dolibarr")

    browser.fill(field, key, "the API key")
    browser.submit(f'{UPDATE_FORM} [name="save"]', f"the card of user {login}")
    if browser.count(UPDATE_FORM):
        details = browser.error_text() or "no message shown"
        raise BrowserError(f"saving the edit form of user {login} failed: Dolibarr showed the form again ({details})")
    log.info("saved a new API key for Dolibarr user %s (id %d)", login, user_id)


def _why_stored_key_unusable(settings: Settings) -> str | None:
    """Return why the key file cannot be kept, or None when its key authenticates the agent."""
    try:
        key = read_key_file(settings.agent.key_file)
    except ConfigError as error:
        return str(error).split(":")[0]
    check = check_agent_key(settings.sandbox_url, key, settings.agent.login, settings.http_timeout)
    if check.armed:
        return None
    if check.reason not in REPLACEABLE:
        # A new key would fail the same way, and setting it would disable the stored one.
        raise KeyNotAcceptedError(f"cannot check the agent's key: {check.detail}; {settings.agent.key_file} was left unchanged")
    return f"the stored key does not work: {check.reason.value}"
