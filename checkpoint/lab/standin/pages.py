"""HTML of the Dolibarr 20.0.2 pages that the tool drives, reduced to what a client reads.

Element names, ids and form fields follow Dolibarr's templates (``core/tpl/login.tpl.php``,
``user/card.php``, ``user/perms.php``, ``user/list.php``). Event messages are rendered as the
DOM that Dolibarr's jnotify script builds, so a browser client finds them at the same place.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote, urlencode

from checkpoint.lab.standin.sessions import Session

DOLIBARR_VERSION = "20.0.2"
LOGIN_ACTION = "/index.php?mainmenu=home"


def attribute(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def application_title(consts: dict[str, str]) -> str:
    return consts.get("MAIN_APPLICATION_TITLE") or "Dolibarr"


def document(title: str, body: str, session: Session, consts: dict[str, str], *, body_class: str = "body") -> str:
    token = attribute(session.token)
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n"
        "<meta charset=\"UTF-8\">\n"
        f"<meta name=\"anti-csrf-newtoken\" content=\"{token}\">\n"
        f"<meta name=\"anti-csrf-currenttoken\" content=\"{token}\">\n"
        "<meta name=\"robots\" content=\"noindex,nofollow\">\n"
        f"<title>{escape(title)}</title>\n</head>\n"
        f"<body id=\"mainbody\" class=\"{body_class}\">\n{body}\n</body>\n</html>\n"
    )


def event_messages(errors: list[str] = (), warnings: list[str] = (), messages: list[str] = ()) -> str:
    """Render messages as the jnotify notifications that Dolibarr shows after its script runs."""
    parts = []
    for kind, texts in (("error", errors), ("warning", warnings), ("mesgs", messages)):
        for text in texts:
            parts.append(
                f"<div class=\"jnotify-notification jnotify-notification-{kind}\">"
                f"<div class=\"jnotify-message\"><div>{escape(text)}</div></div></div>"
            )
    if not parts:
        return ""
    return "<div class=\"jnotify-container\">" + "".join(parts) + "</div>"


def logo_url(file_name: str) -> str:
    return "/viewimage.php?" + urlencode({"modulepart": "mycompany", "entity": "1", "file": file_name})


# -- login ------------------------------------------------------------------


def login_page(session: Session, consts: dict[str, str], *, username: str = "", error: str = "",
               warning: str = "") -> str:
    title = application_title(consts)
    small_logo = consts.get("MAIN_INFO_SOCIETE_LOGO_SMALL")
    logo = ""
    if small_logo:
        logo = (f"<div id=\"login_line1\"><img alt=\"\" src=\"{attribute(logo_url('logos/thumbs/' + small_logo))}\""
                " id=\"img_logo\"></div>")

    hidden = "".join(
        f"<input type=\"hidden\" name=\"{name}\" value=\"{attribute(value)}\">\n"
        for name, value in (
            ("token", session.token), ("actionlogin", "login"), ("loginfunction", "loginfunction"),
            ("backtopage", ""), ("tz", ""), ("tz_string", ""), ("dst_observed", ""), ("dst_first", ""),
            ("dst_second", ""), ("screenwidth", ""), ("screenheight", ""),
            ("dol_hide_topmenu", ""), ("dol_hide_leftmenu", ""), ("dol_optimize_smallscreen", ""),
            ("dol_no_mouse_hover", ""), ("dol_use_jmobile", ""),
        )
    )
    message = ""
    if error:
        message += f"<div class=\"center login_main_message\"><div class=\"error\" role=\"alert\">{escape(error)}</div></div>"
    if warning:
        message += f"<div class=\"center login_main_message\"><div class=\"warning\" role=\"alert\">{escape(warning)}</div></div>"

    body = (
        "<div class=\"login_center center\">\n<div class=\"login_vertical_align\">\n"
        f"<form id=\"login\" name=\"login\" method=\"post\" action=\"{LOGIN_ACTION}\">\n{hidden}"
        f"<div class=\"login_table_title center\" title=\"{attribute(title)}\">{escape(title)}</div>\n"
        f"<div class=\"login_table\">\n{logo}\n<div id=\"login_right\">\n"
        "<div class=\"trinputlogin\"><input type=\"text\" id=\"username\" maxlength=\"255\" placeholder=\"Login\""
        f" name=\"username\" class=\"flat input-icon-user minwidth150\" value=\"{attribute(username)}\" tabindex=\"1\""
        " autofocus=\"autofocus\" autocapitalize=\"off\" autocomplete=\"on\" spellcheck=\"false\" autocorrect=\"off\"></div>\n"
        "<div class=\"trinputlogin\"><input type=\"password\" id=\"password\" maxlength=\"128\" placeholder=\"Password\""
        " name=\"password\" class=\"flat input-icon-password minwidth150\" value=\"\" tabindex=\"2\" autocomplete=\"on\"></div>\n"
        "</div>\n</div>\n"
        "<div id=\"login-submit-wrapper\"><input type=\"submit\" class=\"button small\" value=\"&nbsp; Login &nbsp;\""
        " tabindex=\"5\"></div>\n"
        f"</form>\n{message}\n</div>\n</div>"
    )
    return document(f"Login @ {DOLIBARR_VERSION}", body, session, consts, body_class="body bodylogin")


# -- pages of a logged-in user -----------------------------------------------


def main_page(title: str, content: str, session: Session, consts: dict[str, str], user: dict) -> str:
    """Wrap ``content`` in the top bar with the user's login and the logout link."""
    logout = "/user/logout.php?" + urlencode({"token": session.token})
    top = (
        "<div id=\"id-top\"><div class=\"login_block\">"
        f"<a class=\"userlink\" href=\"/user/card.php?id={user['rowid']}\">{escape(user['login'])}</a> "
        f"<a class=\"login_block_elem\" href=\"{attribute(logout)}\" title=\"Logout\">Logout</a>"
        "</div>\n<div class=\"tmenudiv\"><ul class=\"tmenu\">"
        "<li class=\"tmenu\"><a class=\"tmenuimage\" href=\"/index.php?mainmenu=home\">Home</a></li>"
        "<li class=\"tmenu\"><a href=\"/user/list.php?mainmenu=home&amp;leftmenu=users\">Users</a></li>"
        "</ul></div></div>\n"
    )
    body = f"{top}<div id=\"id-right\"><div class=\"fiche\">\n{content}\n</div></div>"
    return document(f"{title} - {application_title(consts)}", body, session, consts)


def home_content(consts: dict[str, str]) -> str:
    company = consts.get("MAIN_INFO_SOCIETE_NOM", "")
    return f"<div class=\"titre inline-block\">Home</div>\n<div class=\"opacitymedium\">{escape(company)}</div>"


def setup_content() -> str:
    return (
        "<div class=\"titre inline-block\">Setup</div>\n"
        "<div class=\"warning\">Some mandatory setup parameters are not yet defined.</div>"
    )


def forbidden_content() -> str:
    return "<div class=\"error\">Access denied.<br>You try to access a page, area or feature without being authenticated" \
           " or that is not allowed to your user.</div>"


def user_list_content(users: list[dict], search_login: str) -> str:
    rows = []
    for user in users:
        status = "Enabled" if user["statut"] == 1 else "Disabled"
        rows.append(
            f"<tr class=\"oddeven\" data-rowid=\"{user['rowid']}\">"
            f"<td class=\"tdoverflowmax150\"><a href=\"/user/card.php?id={user['rowid']}\""
            f" class=\"classfortooltip\">{escape(user['login'])}</a></td>"
            f"<td>{escape(user['lastname'] or '')}</td><td>{escape(user['firstname'] or '')}</td>"
            f"<td class=\"center\">{'Yes' if user['admin'] else 'No'}</td><td class=\"center\">{status}</td></tr>"
        )
    return (
        "<form method=\"POST\" id=\"searchFormList\" action=\"/user/list.php\">\n"
        f"<div class=\"titre inline-block\">List of users ({len(users)})</div>\n"
        "<table class=\"tagtable liste\" id=\"tablelines\">\n"
        "<tr class=\"liste_titre_filter\"><td class=\"liste_titre\">"
        f"<input type=\"text\" class=\"flat maxwidth50\" name=\"search_login\" value=\"{attribute(search_login)}\"></td>"
        "<td></td><td></td><td></td><td></td></tr>\n"
        "<tr class=\"liste_titre\"><th>Login</th><th>Last name</th><th>First name</th><th>Administrator</th>"
        "<th>Status</th></tr>\n" + "\n".join(rows) + "\n</table>\n</form>"
    )


def quote_path(value: str) -> str:
    return quote(value, safe="")
