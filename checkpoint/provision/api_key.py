"""Keep the agent's API key working: reuse the stored one, or set, verify and store a new one.

A new key is made here with ``secrets`` and typed into the user's edit form, which is
then saved whole, as a browser does, because Dolibarr 20's update action reads every
field from the POST.

The key file never contains an unverified key, and a new key is never lost: before the
form is saved, the key is written to a pending file beside the key file (mode 600), and
only after the REST API accepted it as the agent is that file renamed onto the key
file. A run that stopped in between leaves the pending file, and the next run stores
that key when it authenticates the agent, instead of setting another one.
"""

from __future__ import annotations

import logging
import secrets
import string
from pathlib import Path

from checkpoint.agent_files import pending_key_path, promote_pending_key, read_key_file, write_key_file
from checkpoint.dolibarr_api import KeyCheck, Reason, check_agent_key
from checkpoint.exceptions import BrowserError, ConfigError, KeyNotAcceptedError
from checkpoint.outcome import Outcome
from checkpoint.provision.browser import AdminBrowser
from checkpoint.provision.users import UPDATE_FORM, USER_CARD
from checkpoint.settings import Settings

log = logging.getLogger(__name__)

KEY_LENGTH = 32
KEY_ALPHABET = string.ascii_letters + string.digits
# Check results that a new key can cure; any other (API module off, sandbox down,
# missing right) would make the new key fail too.
REPLACEABLE = {Reason.KEY_REJECTED, Reason.WRONG_USER}


def generate_api_key() -> str:
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def ensure_agent_api_key(browser: AdminBrowser, settings: Settings, user_id: int, *, rotate: bool = False) -> Outcome:
    """Keep a stored key that authenticates the agent (ok), or set and store a new one (changed).

    A pending key left by an interrupted run is stored when it authenticates the agent,
    and counts as the rotation when ``rotate`` is set.
    """
    agent = settings.agent
    pending = pending_key_path(agent.key_file)
    if _store_pending_key(settings, pending):
        return Outcome.changed(
            "ensure_agent_api_key", f"stored the key that an interrupted run left in {pending} into {agent.key_file}"
        )

    reason = "rotation was requested" if rotate else _why_stored_key_unusable(settings)
    if reason is None:
        return Outcome.ok("ensure_agent_api_key", f"the key in {agent.key_file} authenticates {agent.login}")

    log.info("setting a new API key for %s: %s", agent.login, reason)
    key = generate_api_key()
    write_key_file(pending, key)
    set_api_key(browser, user_id, agent.login, key)

    check = check_agent_key(settings.sandbox_url, key, agent.login, settings.http_timeout)
    if not check.armed:
        pending.unlink(missing_ok=True)
        raise KeyNotAcceptedError(
            f"the new key saved for {agent.login} does not work ({describe_key_problem(check, agent.login)}); "
            f"{agent.key_file} was left unchanged"
        )
    promote_pending_key(pending, agent.key_file)
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


def describe_key_problem(check: KeyCheck, login: str) -> str:
    """Return why a key check failed, with the fix that applies inside provision."""
    if check.reason is Reason.KEY_REJECTED:
        return (
            "the sandbox rejected it (401): enable user "
            f"{login} in Dolibarr and clear its login validity dates, then run again"
        )
    if check.reason is Reason.WRONG_USER:
        return (
            f"it authenticates user {check.user.get('login')!r}, which has the same key: "
            "clear that user's API key in Dolibarr, then run again"
        )
    if check.reason is Reason.MISSING_RIGHT:
        return (
            "users/info is forbidden (403): add right 251 (read users) or 342 (modify own user) "
            "to checkpoint.agent.rights"
        )
    return check.detail


def _store_pending_key(settings: Settings, pending: Path) -> bool:
    """Store the pending key when it authenticates the agent; delete it when the sandbox rejects it."""
    if not pending.exists():
        return False
    try:
        key = read_key_file(pending)
    except ConfigError as error:
        log.warning("ignoring the pending key: %s", error)
        _remove_pending_key(pending)
        return False

    check = check_agent_key(settings.sandbox_url, key, settings.agent.login, settings.http_timeout)
    if check.armed:
        promote_pending_key(pending, settings.agent.key_file)
        log.info("stored the pending key from %s in %s", pending, settings.agent.key_file)
        return True
    if check.reason not in REPLACEABLE:
        raise KeyNotAcceptedError(
            f"cannot check the pending key in {pending}: {describe_key_problem(check, settings.agent.login)}; "
            "it was kept for the next run"
        )
    log.info("deleting the pending key in %s: %s", pending, check.reason.value)
    _remove_pending_key(pending)
    return False


def _remove_pending_key(pending: Path) -> None:
    try:
        pending.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot delete the stale pending key {pending} ({error.strerror}): remove it by hand") from None


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
        raise KeyNotAcceptedError(
            f"cannot check the agent's key: {describe_key_problem(check, settings.agent.login)}; "
            f"{settings.agent.key_file} was left unchanged"
        )
    return f"the stored key does not work: {check.reason.value}"
