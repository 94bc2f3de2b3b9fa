"""Give the agent exactly the configured rights, through the user's permissions page.

Dolibarr 20's ``/user/perms.php?id=U`` links each right the user has to
``action=delrights&rights=ID`` and each right it lacks to ``action=addrights&rights=ID``,
both with the session's CSRF token. Following those links is what clicking the
switches does. Dolibarr adds the read right of a module (or of a permission group)
along with any other right of it, and revoking a read right revokes what it gates,
so the result is read back and compared, never assumed.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

from checkpoint.exceptions import ConfigError
from checkpoint.outcome import Outcome
from checkpoint.provision.browser import AdminBrowser

log = logging.getLogger(__name__)

PERMS_PAGE = "/user/perms.php"
RIGHT_LINKS = 'a[href*="perms.php"][href*="rights="]'


def ensure_agent_rights(browser: AdminBrowser, user_id: int, login: str, expected: tuple[int, ...]) -> Outcome:
    """Grant the missing rights in ``expected`` and revoke every other one; ok when already exact."""
    expected_set = set(expected)
    links = read_right_links(browser, user_id)
    current = set(links["delrights"])
    unknown = expected_set - current - set(links["addrights"])
    if unknown:
        raise ConfigError(
            f"right(s) {_ids(unknown)} are not offered on {PERMS_PAGE}?id={user_id}: check checkpoint.agent.rights, "
            "and that the module of each right is enabled in Dolibarr"
        )
    if current == expected_set:
        return Outcome.ok("ensure_agent_rights", f"user {login} has exactly rights {_ids(expected_set)}")

    _apply(browser, user_id, "delrights", current - expected_set)
    _apply(browser, user_id, "addrights", expected_set - set(read_right_links(browser, user_id)["delrights"]))

    final = set(read_right_links(browser, user_id)["delrights"])
    granted, revoked = final - current, current - final
    if final != expected_set:
        raise ConfigError(
            f"user {login} ended with rights {_ids(final)}, not {_ids(expected_set)}: Dolibarr grants the read "
            "right of a module together with its other rights; add the read rights to checkpoint.agent.rights"
        )
    parts = [f"granted {_ids(granted)}" if granted else "", f"revoked {_ids(revoked)}" if revoked else ""]
    return Outcome.changed(
        "ensure_agent_rights", f"user {login}: {', '.join(part for part in parts if part)}",
        granted=sorted(granted), revoked=sorted(revoked),
    )


def read_right_links(browser: AdminBrowser, user_id: int) -> dict[str, dict[int, str]]:
    """Return ``{"addrights": {id: url}, "delrights": {id: url}}`` from the permissions page."""
    browser.goto(f"{PERMS_PAGE}?id={user_id}", f"the permissions page of user {user_id}")
    return _parse_right_links(browser, user_id)


def _parse_right_links(browser: AdminBrowser, user_id: int) -> dict[str, dict[int, str]]:
    # NOTE: rights inherited from a user group have no link, so they are neither seen
    # nor revoked here. An agent created by this tool belongs to no group.
    links: dict[str, dict[int, str]] = {"addrights": {}, "delrights": {}}
    for href in browser.hrefs(RIGHT_LINKS):
        query = parse_qs(urlsplit(href).query)
        action = _single(query, "action")
        right = _single(query, "rights")
        if action in links and right.isdigit() and _single(query, "id") == str(user_id):
            links[action][int(right)] = href

    if not links["addrights"] and not links["delrights"]:
        browser.require(RIGHT_LINKS, f"links to grant or revoke rights of user {user_id}; is the admin an administrator?")
    return links


def _apply(browser: AdminBrowser, user_id: int, action: str, rights: set[int]) -> None:
    """Follow the page's link for each right still offered, re-reading the page after each."""
    for right in sorted(rights):
        links = _parse_right_links(browser, user_id)[action]
        if right not in links:
            # An earlier change already granted or revoked it along with another right.
            continue
        browser.goto(links[right], f"the permissions page of user {user_id} after {action} {right}")
        log.info("%s right %d for Dolibarr user %d", "granted" if action == "addrights" else "revoked", right, user_id)


def _single(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name, [])
    return values[0] if len(values) == 1 else ""


def _ids(rights: set[int] | tuple[int, ...]) -> str:
    return ", ".join(str(right) for right in sorted(rights)) or "none"
