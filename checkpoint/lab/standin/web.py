"""The web UI: login, users, the user card, permissions, logos, the random-password helper.

Behaviour follows Dolibarr 20.0.2 as observed over HTTP. An unauthenticated page returns
200 with the login form. A POST or a sensitive GET without ``token`` gets 403, and a wrong
token cancels the action and shows a warning. A failed login responds after a delay.
"""

from __future__ import annotations

import logging
import mimetypes
import secrets
import time
from pathlib import Path

from checkpoint.lab import dolcrypt
from checkpoint.lab.standin import pages
from checkpoint.lab.standin.protocol import Request, Response
from checkpoint.lab.standin.sessions import Session, SessionStore, session_cookie_name
from checkpoint.lab.standin.store import Store
from checkpoint.lab.standin.users import handle_perms, handle_user_card, password_matches, random_password

logger = logging.getLogger(__name__)

BAD_LOGIN = "Bad value for login or password"
TOKEN_EXPIRED = "Security token has expired, so action has been canceled. Please try again."
TOKEN_MISSING = (
    "Access to this page this way (POST method or GET with a sensitive value for 'action' parameter) is refused by "
    "CSRF protection in main.inc.php. Token not provided.\nIf you access your server behind a proxy using url "
    "rewriting and the parameter is provided by caller, you might check that all HTTP header are propagated (or "
    "add the line $dolibarr_nocsrfcheck=1 into your conf.php file or MAIN_SECURITY_CSRF_WITH_TOKEN to 0 into "
    "setup).\n"
)

# GET actions that Dolibarr's main.inc.php treats as sensitive, so they need the CSRF token.
SENSITIVE_GET_ACTIONS = {"add", "update", "delete", "addrights", "delrights", "getrandompassword", "setstatus"}

# Files that the login page may show before anyone logs in.
PUBLIC_MODULEPARTS = {"mycompany", "medias"}

class WebApp:
    def __init__(self, store: Store, instance_id: str, documents_dir: Path, auth_failure_delay: float):
        self.store = store
        self.instance_id = instance_id
        self.documents_dir = documents_dir
        self.auth_failure_delay = auth_failure_delay
        self.sessions = SessionStore()
        self.cookie_name = session_cookie_name(instance_id)

    def handle(self, request: Request) -> Response:
        if request.path == "/viewimage.php":
            return self._view_image(request)

        consts = self.store.consts()
        session, is_new = self.sessions.get_or_create(request.cookie(self.cookie_name))
        response = self._dispatch(request, session, consts)
        if is_new:
            response.headers.append(
                ("Set-Cookie", f"{self.cookie_name}={session.session_id}; path=/; HttpOnly; SameSite=Lax"))
        return response

    def _dispatch(self, request: Request, session: Session, consts: dict[str, str]) -> Response:
        if request.method == "POST" and request.form.get("actionlogin") == "login":
            return self._login(request, session, consts)

        user = self._logged_in_user(session)
        if user is None:
            return Response.html(pages.login_page(session, consts))

        token_problem = self._check_token(request, session)
        if token_problem is not None and token_problem.status == 403:
            return token_problem
        cancelled = token_problem is not None

        context = PageContext(self, request, session, consts, user, cancelled)
        handler = ROUTES.get(request.path)
        if handler is None:
            return Response.html(pages.main_page("Not found", "<div class=\"error\">Page not found</div>",
                                                 session, consts, user), 404)
        return handler(context)

    # -- authentication ------------------------------------------------------

    def _logged_in_user(self, session: Session) -> dict | None:
        """Return the session's user, re-read from the database so a deleted or disabled user is logged out."""
        if session.login is None:
            return None
        user = self.store.user_by_login(session.login)
        if user is None or user["statut"] != 1:
            session.login = None
            return None
        return user

    def _check_token(self, request: Request, session: Session) -> Response | None:
        """Return None when the request may act, a 403 when the token is missing, or a 200 marker when wrong."""
        action = request.param("action")
        sensitive = request.method == "POST" or action in SENSITIVE_GET_ACTIONS or action.startswith("confirm_")
        if not sensitive:
            return None
        if not request.has("token"):
            return Response.text(TOKEN_MISSING, 403)
        if not secrets.compare_digest(request.param("token"), session.token):
            return Response(200)
        return None

    def _login(self, request: Request, session: Session, consts: dict[str, str]) -> Response:
        username = request.form.get("username", "")
        if "token" not in request.form:
            return Response.text(TOKEN_MISSING, 403)
        if not secrets.compare_digest(request.form["token"], session.token):
            return Response.html(pages.login_page(session, consts, username=username, warning=TOKEN_EXPIRED))

        user = self._verify_password(username, request.form.get("password", ""), consts)
        if user is None:
            time.sleep(self.auth_failure_delay)
            logger.info("login failed for a web client at %s", request.client_address)
            return Response.html(pages.login_page(session, consts, username=username, error=BAD_LOGIN))

        session.login = user["login"]
        self.store.record_login(user["rowid"], request.client_address)
        return show_home(PageContext(self, request, session, consts, user, False))

    def _verify_password(self, login: str, password: str, consts: dict[str, str]) -> dict | None:
        if not login or not password:
            return None
        only_login = consts.get("MAIN_ONLY_LOGIN_ALLOWED")
        if only_login and only_login != login:
            return None
        user = self.store.user_by_login(login)
        if user is None or user["statut"] != 1 or not user["pass_crypted"]:
            return None
        if not password_matches(password, user["pass_crypted"]):
            return None
        return user

    # -- public files --------------------------------------------------------

    def _view_image(self, request: Request) -> Response:
        modulepart = request.param("modulepart")
        relative = request.param("file")
        if modulepart not in PUBLIC_MODULEPARTS:
            return Response.text("Access forbidden to this module part without login", 403)

        root = (self.documents_dir / modulepart).resolve()
        target = (root / relative).resolve()
        if not relative or not target.is_relative_to(root) or not target.is_file():
            return Response.text("File not found", 404)
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Response(200, target.read_bytes(), content_type)


class PageContext:
    """Inputs of a page handler: the app, the request, the session, the consts and the logged-in user."""

    def __init__(self, app: WebApp, request: Request, session: Session, consts: dict[str, str], user: dict,
                 cancelled: bool):
        self.app = app
        self.request = request
        self.session = session
        self.consts = consts
        self.user = user
        self.token_cancelled = cancelled
        self._rights: set[int] | None = None

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def action(self) -> str:
        """Return the requested action, or '' when a wrong token cancelled it."""
        return "" if self.token_cancelled else self.request.param("action")

    @property
    def warnings(self) -> list[str]:
        return [TOKEN_EXPIRED] if self.token_cancelled else []

    def has_right(self, right_id: int) -> bool:
        if self._rights is None:
            self._rights = self.store.user_right_ids(self.user["rowid"])
        return right_id in self._rights

    @property
    def is_admin(self) -> bool:
        return bool(self.user["admin"])

    @property
    def api_enabled(self) -> bool:
        return self.consts.get("MAIN_MODULE_API", "0") not in ("", "0")

    def page(self, title: str, content: str, status: int = 200) -> Response:
        return Response.html(pages.main_page(title, content, self.session, self.consts, self.user), status)

    def forbidden(self) -> Response:
        return self.page("Access denied", pages.forbidden_content(), 403)

    def encrypt(self, value: str) -> str:
        return dolcrypt.encrypt(value, self.app.instance_id)

    def decrypt(self, value: str) -> str:
        return dolcrypt.decrypt(value, self.app.instance_id)


# -- page handlers --------------------------------------------------------------


def show_home(context: PageContext) -> Response:
    consts = context.consts
    setup_complete = consts.get("MAIN_INFO_SOCIETE_NOM") and consts.get("MAIN_INFO_SOCIETE_COUNTRY")
    if context.is_admin and not setup_complete:
        return Response.redirect("/admin/index.php?mainmenu=home&leftmenu=setup&mesg=setupnotcomplete")
    return context.page("Home", pages.event_messages(warnings=context.warnings) + pages.home_content(consts))


def show_setup(context: PageContext) -> Response:
    if not context.is_admin:
        return context.forbidden()
    return context.page("Setup", pages.setup_content())


def logout(context: PageContext) -> Response:
    if context.token_cancelled:
        return show_home(context)
    context.app.sessions.destroy(context.session)
    return Response.redirect("/index.php")


def list_users(context: PageContext) -> Response:
    if not (context.is_admin or context.has_right(251)):
        return context.forbidden()
    search_login = context.request.param("search_login")
    users = context.store.search_users(search_login)
    return context.page("Users", pages.user_list_content(users, search_login))


def random_password_ajax(context: PageContext) -> Response:
    if context.request.param("action") != "getrandompassword" or context.token_cancelled:
        return Response(200, b"", "text/plain; charset=UTF-8")
    if not (context.is_admin or context.has_right(2610)):
        return Response(200, b"", "text/plain; charset=UTF-8")
    length = 32 if context.request.param("generic") else 12
    return Response(200, random_password(length).encode(), "text/plain; charset=UTF-8")


ROUTES = {
    "/": show_home,
    "/index.php": show_home,
    "/admin/index.php": show_setup,
    "/user/logout.php": logout,
    "/user/list.php": list_users,
    "/user/card.php": handle_user_card,
    "/user/perms.php": handle_perms,
    "/core/ajax/security.php": random_password_ajax,
}
