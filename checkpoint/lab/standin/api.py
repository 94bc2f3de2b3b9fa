"""The REST API under ``/api/index.php``: ``status``, ``users/info`` and ``login``.

Authentication follows Dolibarr 20.0.2's ``api_access.class.php``. The key comes from
the ``DOLAPIKEY`` header, else the ``DOLAPIKEY`` or ``api_key`` query parameter. A user
matches when its stored key equals the raw key or its dolcrypt encryption, and the
stored key decrypts back to the key. Error bodies have Restler's shape, with a ``debug`` block unless the
const ``API_PRODUCTION_MODE`` is 1.
"""

from __future__ import annotations

import logging
import time

from checkpoint.lab import dolcrypt
from checkpoint.lab.standin.pages import DOLIBARR_VERSION
from checkpoint.lab.standin.protocol import Request, Response
from checkpoint.lab.standin.store import SECRET_COLUMNS, Store
from checkpoint.lab.standin.users import RIGHT_READ_USERS, RIGHT_WRITE_OWN_USER, password_matches, random_password

logger = logging.getLogger(__name__)

API_PREFIX = "/api/index.php"

MODULE_OFF_PAGE = (
    "Module Api must be enabled.<br><br>To activate modules, go on setup Area (Home-&gt;Setup-&gt;Modules)."
)
NO_KEY = (
    "Unauthorized: Failed to login to API. No parameter 'HTTP_DOLAPIKEY' on HTTP header "
    "(and no parameter DOLAPIKEY in URL)."
)
UNKNOWN_KEY = (
    "Unauthorized: Error user not valid (not found with api key or bad status or bad validity dates)"
)
ENCRYPTED_KEY = "Service Unavailable: Bad value for the API key. An API key should not start with dolcrypt:"
DUPLICATE_KEY = "Service Unavailable: Error, more than one user found with this api key"
NOT_ALLOWED = "Forbidden: Not allowed"

STATUS_STAGES = {
    "authenticate": {"success": ["get", "route", "negotiate"], "failure": ["authenticate", "message"]},
    "call": {"success": ["get", "route", "negotiate", "authenticate", "validate"], "failure": ["call", "message"]},
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, stage: str = "call"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.stage = stage


class ApiApp:
    def __init__(self, store: Store, instance_id: str, auth_failure_delay: float):
        self.store = store
        self.instance_id = instance_id
        self.auth_failure_delay = auth_failure_delay

    def handle(self, request: Request) -> Response:
        consts = self.store.consts()
        if consts.get("MAIN_MODULE_API", "0") in ("", "0"):
            return Response.html(MODULE_OFF_PAGE)

        endpoint = request.path[len(API_PREFIX):].strip("/")
        try:
            return self._route(endpoint, request, consts)
        except ApiError as error:
            return self._error(error, consts)

    def _route(self, endpoint: str, request: Request, consts: dict[str, str]) -> Response:
        if endpoint == "login" and request.method in ("GET", "POST"):
            return self._login(request, consts)
        if endpoint == "status" and request.method == "GET":
            self._authenticate(request)
            return Response.json({"success": {
                "code": 200, "dolibarr_version": DOLIBARR_VERSION,
                "access_locked": consts.get("MAIN_ONLY_LOGIN_ALLOWED", "0"),
            }})
        if endpoint == "users/info" and request.method == "GET":
            return self._users_info(request)
        raise ApiError(404, "Not Found", "route")

    def _error(self, error: ApiError, consts: dict[str, str]) -> Response:
        body: dict = {"error": {"code": error.status, "message": error.message}}
        if consts.get("API_PRODUCTION_MODE") != "1":
            source = "api_access.class.php" if error.stage == "authenticate" else "Restler.php"
            body["debug"] = {
                "source": f"{source} at {error.stage} stage",
                "stages": STATUS_STAGES.get(error.stage, STATUS_STAGES["call"]),
            }
        return Response.json(body, error.status)

    # -- authentication ------------------------------------------------------

    def _authenticate(self, request: Request) -> dict:
        key = self._api_key(request)
        if not key:
            raise ApiError(401, NO_KEY, "authenticate")
        if dolcrypt.is_encrypted(key):
            raise ApiError(503, ENCRYPTED_KEY, "authenticate")

        candidates = self.store.users_by_api_key(key, dolcrypt.encrypt(key, self.instance_id))
        if len(candidates) > 1:
            raise ApiError(503, DUPLICATE_KEY, "authenticate")
        matching = [user for user in candidates if self._stored_key_matches(user["api_key"], key)]
        if not matching:
            time.sleep(self.auth_failure_delay)
            logger.info("API request with an unknown key from %s", request.client_address)
            raise ApiError(401, UNKNOWN_KEY, "authenticate")
        return matching[0]

    @staticmethod
    def _api_key(request: Request) -> str:
        header = request.headers.get("DOLAPIKEY")
        if header is not None:
            return header
        if "DOLAPIKEY" in request.query:
            return request.query["DOLAPIKEY"]
        return request.query.get("api_key", "")

    def _stored_key_matches(self, stored: str, key: str) -> bool:
        try:
            return dolcrypt.decrypt(stored, self.instance_id) == key
        except dolcrypt.DolcryptError:
            return False

    # -- endpoints -------------------------------------------------------------

    def _users_info(self, request: Request) -> Response:
        user = self._authenticate(request)
        rights = self.store.user_right_ids(user["rowid"])
        allowed = user["admin"] or RIGHT_READ_USERS in rights or RIGHT_WRITE_OWN_USER in rights
        if not allowed:
            raise ApiError(403, NOT_ALLOWED)
        return Response.json(self._public_user(user, rights))

    def _public_user(self, user: dict, right_ids: set[int]) -> dict:
        """Return the user as Dolibarr's API does: PostgreSQL values as PHP strings, no secrets."""
        public = {name: _php_value(value) for name, value in user.items() if name not in SECRET_COLUMNS}
        public["id"] = public.pop("rowid")
        public["ref"] = public["id"]
        public["status"] = public["statut"]
        public["rights"] = self._rights_tree(right_ids)
        return public

    def _rights_tree(self, right_ids: set[int]) -> dict:
        """Nest granted rights as module -> perms -> subperms -> 1, like ``$user->rights``."""
        tree: dict = {}
        for definition in self.store.rights_definitions():
            if definition["id"] not in right_ids:
                continue
            branch = tree.setdefault(definition["module"], {})
            if definition["subperms"]:
                branch.setdefault(definition["perms"], {})[definition["subperms"]] = 1
            else:
                branch[definition["perms"]] = 1
        return tree

    def _login(self, request: Request, consts: dict[str, str]) -> Response:
        if consts.get("API_DISABLE_LOGIN_API"):
            raise ApiError(403, "Forbidden: Error, the login API has been disabled for security purpose")

        login = request.param("login")
        password = request.param("password")
        user = self.store.user_by_login(login) if login else None
        if user is None or user["statut"] != 1 or not password_matches(password, user["pass_crypted"]):
            time.sleep(self.auth_failure_delay)
            raise ApiError(403, "Forbidden: Access denied")

        key = dolcrypt.decrypt(user["api_key"], self.instance_id) if user["api_key"] else ""
        if request.param("reset") == "1" or not key:
            rights = self.store.user_right_ids(user["rowid"])
            if request.param("reset") == "1" and not (user["admin"] or RIGHT_WRITE_OWN_USER in rights):
                raise ApiError(403, "Forbidden: User need write permission on itself to reset its API token")
            key = random_password(32)
            self.store.update_user(user["rowid"], {"api_key": dolcrypt.encrypt(key, self.instance_id)}, user["rowid"])

        return Response.json({"success": {
            "code": 200, "token": key, "entity": str(user["entity"]),
            "message": f"Welcome {login} - This is your token (recorded for your user). You can use it to make any "
                       "REST API call, or enter it into the DOLAPIKEY field to use the Dolibarr API explorer.",
        }})


def _php_value(value):
    if value is None:
        return None
    return str(value)
