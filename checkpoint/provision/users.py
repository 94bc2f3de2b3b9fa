"""Find the agent's Dolibarr user by login, or create it as a non-admin user.

Dolibarr 20's user list (``/user/list.php``) filters with ``search_login``, which
matches a substring, and shows only active users unless ``search_statut`` is -1.
Each row links the login to ``/user/card.php?id=N``, its text cut to 24 characters.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlencode, urlsplit

from checkpoint.outcome import Outcome
from checkpoint.provision.browser import AdminBrowser, BrowserError, describe_url

log = logging.getLogger(__name__)

USER_LIST = "/user/list.php"
USER_CARD = "/user/card.php"
USER_CARD_LINKS = 'a[href*="/user/card.php?id="]'
CREATE_FORM = 'form[name="createuser"]'
UPDATE_FORM = 'form[name="updateuser"]'
# Dolibarr 20 cuts the login shown in the user list to this many characters.
LIST_LOGIN_LENGTH = 24


def ensure_agent_user(browser: AdminBrowser, login: str) -> Outcome:
    """Return ok with the agent's user id, creating the user (changed) when it is missing.

    An agent found with administrator status is set back to a plain user (changed),
    because rights mean nothing for an administrator.
    """
    user_id = find_user_id(browser, login)
    if user_id is None:
        user_id = _create_user(browser, login)
        return Outcome.changed("ensure_agent_user", f"created user {login} (id {user_id})", user_id=user_id)

    if _demote_if_admin(browser, user_id, login):
        return Outcome.changed(
            "ensure_agent_user", f"user {login} (id {user_id}) was an administrator; made it a plain user",
            user_id=user_id,
        )
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
    browser.goto(f"{USER_CARD}?action=create", "the form to create a user")
    browser.require(CREATE_FORM, f"the form {CREATE_FORM}")
    browser.fill(f'{CREATE_FORM} [name="login"]', login, "the login")
    browser.fill(f'{CREATE_FORM} [name="lastname"]', login, "the last name")
    if browser.count(f'{CREATE_FORM} select[name="admin"]'):
        browser.select(f'{CREATE_FORM} select[name="admin"]', "0", "the administrator choice")

    # NOTE: the form carries the password that Dolibarr generated for the agent, so a
    # failure trace of this step contains it (in a mode 600 file). Nothing uses that password.
    browser.submit(f'{CREATE_FORM} [name="save"]', f"the card of the new user {login}")
    user_id = _id_from_url(browser.page.url)
    if user_id is None or browser.count(CREATE_FORM):
        details = browser.error_text() or "no message shown"
        raise BrowserError(
            f"creating user {login} failed: Dolibarr stayed on {describe_url(browser.page.url)} ({details})"
        )
    log.info("created Dolibarr user %s (id %d)", login, user_id)
    return user_id


def _demote_if_admin(browser: AdminBrowser, user_id: int, login: str) -> bool:
    browser.goto(f"{USER_CARD}?id={user_id}&action=edit", f"the edit form of user {login}")
    browser.require(UPDATE_FORM, f"the edit form {UPDATE_FORM} of user {login}")
    admin_select = f'{UPDATE_FORM} select[name="admin"]'
    if not browser.count(admin_select) or browser.value(admin_select) != "1":
        return False

    browser.select(admin_select, "0", "the administrator choice")
    browser.submit(f'{UPDATE_FORM} [name="save"]', f"the card of user {login}")
    if browser.count(UPDATE_FORM):
        details = browser.error_text() or "no message shown"
        raise BrowserError(f"removing administrator status from user {login} failed: {details}")
    log.info("removed administrator status from Dolibarr user %s (id %d)", login, user_id)
    return True


def _id_from_url(url: str) -> int | None:
    values = parse_qs(urlsplit(url).query).get("id", [])
    if len(values) != 1 or not values[0].isdigit():
        return None
    return int(values[0])
