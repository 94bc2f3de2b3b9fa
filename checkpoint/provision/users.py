"""Find the agent's Dolibarr user by login, or create it as a non-admin user, marked as ours.

Dolibarr 20's user list (``/user/list.php``) filters with ``search_login``, which
matches a substring, and shows only active users unless ``search_statut`` is -1.
Each row links the login to ``/user/card.php?id=N``, its text cut to 24 characters.

Provision manages only a user that it created. It marks that user at creation with a
fixed first and last name, which Dolibarr 20.0.2 stores in ``llx_user``, shows on the
user's card and edit form, and keeps when the edit form is saved to set the API key.
An existing user without that mark, an administrator, or the admin that provision logs
in as is rejected and left untouched.
"""

from __future__ import annotations

import logging
import secrets
import string
from urllib.parse import parse_qs, urlencode, urlsplit

from checkpoint.exceptions import BrowserError, ConfigError
from checkpoint.outcome import Outcome
from checkpoint.provision.browser import AdminBrowser, describe_url

log = logging.getLogger(__name__)

USER_LIST = "/user/list.php"
USER_CARD = "/user/card.php"
USER_CARD_LINKS = 'a[href*="/user/card.php?id="]'
CREATE_FORM = 'form[name="createuser"]'
UPDATE_FORM = 'form[name="updateuser"]'
# Dolibarr 20 cuts the login shown in the user list to this many characters.
LIST_LOGIN_LENGTH = 24
# The mark of a user created by provision. Both fit Dolibarr 20's varchar(50) columns.
MARK_FIRSTNAME = "Sandbox agent"
MARK_LASTNAME = "(dolibarr-sandbox-checkpoint)"
PASSWORD_LENGTH = 32
PASSWORD_ALPHABET = string.ascii_letters + string.digits


def generate_password() -> str:
    """Return a random password for the new agent; nothing uses it, since the agent works by API key."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def ensure_agent_user(browser: AdminBrowser, login: str, admin_login: str | None) -> Outcome:
    """Return ok with the agent's user id, creating the user (changed) when it is missing.

    Raises ConfigError, changing nothing, when ``login`` is ``admin_login`` or belongs to
    a user that provision did not create or that is an administrator.
    """
    if admin_login is not None and login == admin_login:
        raise ConfigError(_foreign_user_message(login, "is the admin login that provision logs in with"))

    user_id = find_user_id(browser, login)
    if user_id is None:
        user_id = _create_user(browser, login)
        return Outcome.changed("ensure_agent_user", f"created user {login} (id {user_id})", user_id=user_id)

    _require_managed_user(browser, user_id, login)
    return Outcome.ok("ensure_agent_user", f"user {login} exists (id {user_id})", user_id=user_id)


def find_user_id(browser: AdminBrowser, login: str) -> int | None:
    """Return the id of the user whose login is exactly ``login``, or None."""
    query = urlencode({"search_login": login, "search_statut": "-1"})
    browser.goto(f"{USER_LIST}?{query}", "the list of users")
    candidates: dict[int, str] = {}
    for href, text in browser.links(USER_CARD_LINKS):
        user_id = _id_from_url(href)
        if user_id is not None and text:
            candidates.setdefault(user_id, text)

    exact = [user_id for user_id, text in candidates.items() if text == login]
    if exact:
        return exact[0]
    if len(login) <= LIST_LOGIN_LENGTH:
        return None

    # A long login is shown cut short: read the login field of each candidate's card.
    for user_id, text in candidates.items():
        if login.startswith(text.rstrip(".…")) and read_login(browser, user_id) == login:
            return user_id
    return None


def read_login(browser: AdminBrowser, user_id: int) -> str:
    browser.goto(f"{USER_CARD}?id={user_id}&action=edit", f"the edit form of user {user_id}")
    browser.require(UPDATE_FORM, f"the edit form {UPDATE_FORM} of user {user_id}")
    return browser.value(f'{UPDATE_FORM} [name="login"]')


def _create_user(browser: AdminBrowser, login: str) -> int:
    # The create form carries the new user's password, so the trace skips it.
    browser.pause_trace()
    browser.goto(f"{USER_CARD}?action=create", "the form to create a user")
    browser.require(CREATE_FORM, f"the form {CREATE_FORM}")
    # The login comes last, because Dolibarr's create form may fill it in from the names.
    browser.fill(f'{CREATE_FORM} [name="lastname"]', MARK_LASTNAME, "the last name")
    browser.fill(f'{CREATE_FORM} [name="firstname"]', MARK_FIRSTNAME, "the first name")
    browser.fill(f'{CREATE_FORM} [name="login"]', login, "the login")
    if browser.count(f'{CREATE_FORM} select[name="admin"]'):
        browser.select(f'{CREATE_FORM} select[name="admin"]', "0", "the administrator choice")
    password = generate_password()
    browser.remember_secret(password)
    browser.fill(f'{CREATE_FORM} [name="password"]', password, "the password")

    browser.submit(f'{CREATE_FORM} [name="save"]', f"the card of the new user {login}")
    user_id = _id_from_url(browser.page.url)
    if user_id is None or browser.count(CREATE_FORM):
        details = browser.error_text() or "no message shown"
        raise BrowserError(
            f"creating user {login} failed: Dolibarr stayed on {describe_url(browser.page.url)} ({details})"
        )
    log.info("created Dolibarr user %s (id %d)", login, user_id)
    browser.start_trace()
    return user_id


def _require_managed_user(browser: AdminBrowser, user_id: int, login: str) -> None:
    """Raise ConfigError unless the user carries provision's mark and is not an administrator."""
    browser.goto(f"{USER_CARD}?id={user_id}&action=edit", f"the edit form of user {login}")
    browser.require(UPDATE_FORM, f"the edit form {UPDATE_FORM} of user {login}")

    names = (browser.value(f'{UPDATE_FORM} [name="firstname"]'), browser.value(f'{UPDATE_FORM} [name="lastname"]'))
    if names != (MARK_FIRSTNAME, MARK_LASTNAME):
        raise ConfigError(_foreign_user_message(
            login, f"was not created by provision (its first and last names are not {MARK_FIRSTNAME!r} {MARK_LASTNAME!r})"
        ))

    admin_select = f'{UPDATE_FORM} select[name="admin"]'
    if not browser.count(admin_select):
        raise ConfigError(
            f"cannot tell whether user {login} is an administrator: its edit form has no administrator choice; "
            "log in to provision as a Dolibarr administrator"
        )
    if browser.value(admin_select) != "0":
        raise ConfigError(_foreign_user_message(login, "is an administrator, and provision never demotes one"))


def _foreign_user_message(login: str, reason: str) -> str:
    return (
        f"agent login {login!r} {reason}: provision manages only a user that it created; "
        "choose another checkpoint.agent.login"
    )


def _id_from_url(url: str) -> int | None:
    values = parse_qs(urlsplit(url).query).get("id", [])
    if len(values) != 1 or not values[0].isdigit():
        return None
    return int(values[0])
