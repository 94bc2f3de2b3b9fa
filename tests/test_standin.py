"""The Dolibarr stand-in against the real Dolibarr 20.0.2 fixture database and documents."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from checkpoint.lab import dolcrypt
from checkpoint.lab.standin import StandinServer
from checkpoint.lab.standin.sessions import session_cookie_name
from tests.db_helpers import restore_dump
from tests.conftest import (
    FIXTURE_ADMIN_PASSWORD,
    FIXTURE_API_KEYS,
    FIXTURE_INSTANCE_ID,
    make_shared_tmpdir,
)

OWNER = "standin_test_owner"
OTHER_INSTANCE_ID = "0123456789abcdef0123456789abcdef"
FORBIDDEN_BODY = {"code": 403, "message": "Forbidden: Not allowed"}
TIMEOUT = 10


def restore_fixture(pg_cluster, fixture_files, database: str) -> str:
    return restore_dump(pg_cluster, fixture_files["dump"], database, OWNER)


@pytest.fixture(scope="module")
def documents_dir(fixture_documents_dir):
    return fixture_documents_dir


@pytest.fixture(scope="module")
def fixture_db(pg_cluster, fixture_files):
    return restore_fixture(pg_cluster, fixture_files, "standin_fixture")


def start_standin(pg_cluster, uri, documents_dir, instance_id=FIXTURE_INSTANCE_ID, delay=0.0):
    server = StandinServer(uri, instance_id, documents_dir, auth_failure_delay=delay,
                           pgpassfile=pg_cluster.pgpass_file)
    server.start()
    return server


@pytest.fixture(scope="module")
def standin(pg_cluster, fixture_db, documents_dir):
    server = start_standin(pg_cluster, fixture_db, documents_dir)
    yield server
    server.stop()


def api_get(server, endpoint, key=None, **kwargs):
    headers = {"DOLAPIKEY": key} if key is not None else {}
    return requests.get(f"{server.url}/api/index.php/{endpoint}", headers=headers, timeout=TIMEOUT, **kwargs)


def csrf_token(html: str) -> str:
    return re.search(r'<meta name="anti-csrf-newtoken" content="([^"]+)"', html).group(1)


def login(server, login_name="admin", password=FIXTURE_ADMIN_PASSWORD):
    session = requests.Session()
    token = csrf_token(session.get(server.url + "/", timeout=TIMEOUT).text)
    response = session.post(
        server.url + "/index.php?mainmenu=home",
        data={"token": token, "actionlogin": "login", "loginfunction": "loginfunction",
              "username": login_name, "password": password},
        timeout=TIMEOUT,
    )
    return session, token, response


def form_fields(html: str, form_name: str) -> dict[str, str]:
    """Return the fields a browser would submit from the form named ``form_name``."""
    form = re.search(rf'<form[^>]*name="{form_name}".*?</form>', html, re.S).group(0)
    fields = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]*)"', tag)
        kind = re.search(r'type="([^"]*)"', tag)
        if name and (kind is None or kind.group(1) != "submit"):
            value = re.search(r'value="([^"]*)"', tag)
            fields[name.group(1)] = value.group(1) if value else ""
    for select in re.findall(r'<select[^>]*name="([^"]*)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', select[1])
        fields[select[0]] = chosen.group(1) if chosen else ""
    return fields


def user_id(session, server, login_name) -> int:
    page = session.get(server.url + "/user/list.php", params={"search_login": login_name}, timeout=TIMEOUT).text
    rows = re.findall(r'<tr class="oddeven" data-rowid="(\d+)"><td[^>]*><a[^>]*>([^<]*)</a>', page)
    return int(next(rowid for rowid, found in rows if found == login_name))


def create_user(session, server, token, login_name, api_key="") -> int:
    response = session.post(
        server.url + "/user/card.php",
        data={"token": token, "action": "add", "entity": "1", "login": login_name, "lastname": "Test",
              "firstname": "", "password": "Pass-word-1234", "admin": "0", "api_key": api_key},
        allow_redirects=False, timeout=TIMEOUT,
    )
    assert response.status_code == 302
    return int(re.search(r"/user/card.php\?id=(\d+)$", response.headers["Location"]).group(1))


def user_rights(pg_cluster, uri_database, user) -> set[int]:
    output = pg_cluster.psql(f"SELECT fk_id FROM llx_user_rights WHERE fk_user = {user}", database=uri_database)
    return {int(line) for line in output.split()}


# -- dolcrypt ---------------------------------------------------------------------


@pytest.mark.parametrize("login_name", sorted(FIXTURE_API_KEYS))
def test_dolcrypt_reproduces_stored_key(pg_cluster, fixture_db, login_name):
    stored = pg_cluster.psql(f"SELECT api_key FROM llx_user WHERE login = '{login_name}'",
                             database="standin_fixture").strip()
    assert dolcrypt.encrypt(FIXTURE_API_KEYS[login_name], FIXTURE_INSTANCE_ID) == stored


def test_dolcrypt_decrypt_round_trip():
    value = dolcrypt.encrypt("some-key-123", FIXTURE_INSTANCE_ID)
    assert dolcrypt.decrypt(value, FIXTURE_INSTANCE_ID) == "some-key-123"


def test_dolcrypt_decrypt_plain_value_unchanged():
    assert dolcrypt.decrypt("plain-key", FIXTURE_INSTANCE_ID) == "plain-key"


# -- REST API ---------------------------------------------------------------------


@pytest.mark.parametrize("login_name", ["admin", "crm_integration"])
def test_api_fixture_key_authenticates(standin, login_name):
    response = api_get(standin, "status", FIXTURE_API_KEYS[login_name])
    assert response.status_code == 200
    assert response.json()["success"]["dolibarr_version"] == "20.0.2"


def test_api_users_info_for_admin(standin):
    response = api_get(standin, "users/info", FIXTURE_API_KEYS["admin"])
    assert response.status_code == 200
    body = response.json()
    assert body["login"] == "admin"
    assert "rights" in body
    assert "api_key" not in body
    assert not {"pass", "pass_crypted", "pass_temp"} & body.keys()


def test_api_key_in_query_parameters(standin):
    for name in ("DOLAPIKEY", "api_key"):
        response = api_get(standin, "users/info", params={name: FIXTURE_API_KEYS["admin"]})
        assert response.status_code == 200, name


def test_api_header_key_wins_over_query(standin):
    response = api_get(standin, "users/info", "wrong-key-000000", params={"DOLAPIKEY": FIXTURE_API_KEYS["admin"]})
    assert response.status_code == 401


def test_api_users_info_forbidden_without_rights(standin):
    response = api_get(standin, "users/info", FIXTURE_API_KEYS["crm_integration"])
    assert response.status_code == 403
    assert response.json()["error"] == FORBIDDEN_BODY


@pytest.mark.parametrize("login_name", ["admin", "crm_integration"])
def test_api_key_rejected_under_other_instance_id(pg_cluster, fixture_db, documents_dir, login_name):
    server = start_standin(pg_cluster, fixture_db, documents_dir, instance_id=OTHER_INSTANCE_ID)
    try:
        response = api_get(server, "users/info", FIXTURE_API_KEYS[login_name])
    finally:
        server.stop()
    assert response.status_code == 401


def test_api_unknown_key_message(standin):
    response = api_get(standin, "users/info", "no-such-key-123456")
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("Unauthorized: Error user not valid")


def test_auth_failures_are_delayed(pg_cluster, fixture_db, documents_dir):
    server = start_standin(pg_cluster, fixture_db, documents_dir, delay=1.0)
    try:
        started = time.monotonic()
        response = api_get(server, "users/info", "no-such-key-123456")
        api_elapsed = time.monotonic() - started

        started = time.monotonic()
        login(server, password="wrong")
        login_elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert response.status_code == 401
    assert api_elapsed >= 0.5
    assert login_elapsed >= 0.5


def test_api_without_key_is_unauthorized(standin):
    response = api_get(standin, "status")
    assert response.status_code == 401
    assert "No parameter 'HTTP_DOLAPIKEY'" in response.json()["error"]["message"]


def test_api_encrypted_key_is_unavailable(standin):
    response = api_get(standin, "users/info", dolcrypt.encrypt(FIXTURE_API_KEYS["admin"], FIXTURE_INSTANCE_ID))
    assert response.status_code == 503


def test_api_error_has_debug_block(standin):
    assert "debug" in api_get(standin, "status").json()


def test_api_production_mode_hides_debug(pg_cluster, standin):
    pg_cluster.psql("INSERT INTO llx_const (name, entity, value) VALUES ('API_PRODUCTION_MODE', 1, '1')",
                    database="standin_fixture")
    try:
        body = api_get(standin, "status").json()
    finally:
        pg_cluster.psql("DELETE FROM llx_const WHERE name = 'API_PRODUCTION_MODE'", database="standin_fixture")
    assert "debug" not in body
    assert body["error"]["code"] == 401


def test_api_module_off_returns_html(pg_cluster, fixture_files, documents_dir):
    uri = restore_fixture(pg_cluster, fixture_files, "standin_api_off")
    pg_cluster.psql("DELETE FROM llx_const WHERE name = 'MAIN_MODULE_API'", database="standin_api_off")
    server = start_standin(pg_cluster, uri, documents_dir)
    try:
        response = api_get(server, "users/info", FIXTURE_API_KEYS["admin"])
    finally:
        server.stop()
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("Module Api must be enabled")


# -- login ------------------------------------------------------------------------


def test_unauthenticated_page_shows_login_form(standin):
    response = requests.get(standin.url + "/user/card.php?id=1", timeout=TIMEOUT)
    assert response.status_code == 200
    assert 'id="login"' in response.text
    for field in ('name="token"', 'name="actionlogin" value="login"', 'name="loginfunction" value="loginfunction"',
                  'id="username"', 'id="password"'):
        assert field in response.text, field


def test_session_cookie_named_from_instance_id(standin):
    response = requests.get(standin.url + "/", timeout=TIMEOUT)
    expected = session_cookie_name(FIXTURE_INSTANCE_ID)
    assert expected.startswith("DOLSESSID_")
    assert expected in response.cookies
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert "SameSite=Lax" in response.headers["Set-Cookie"]


def test_login_succeeds_for_admin(standin):
    _, _, response = login(standin)
    assert response.status_code == 200
    assert 'id="login"' not in response.text
    assert "/user/logout.php?token=" in response.text


def test_login_wrong_password_shows_error(standin):
    _, _, response = login(standin, password="wrong")
    assert response.status_code == 200
    assert '<div class="error" role="alert">Bad value for login or password</div>' in response.text


def test_login_without_token_forbidden(standin):
    response = requests.post(standin.url + "/index.php?mainmenu=home", timeout=TIMEOUT,
                             data={"actionlogin": "login", "username": "admin", "password": FIXTURE_ADMIN_PASSWORD})
    assert response.status_code == 403


def test_login_wrong_token_warns(standin):
    session = requests.Session()
    session.get(standin.url + "/", timeout=TIMEOUT)
    response = session.post(standin.url + "/index.php?mainmenu=home", timeout=TIMEOUT,
                            data={"token": "wrong", "actionlogin": "login", "username": "admin",
                                  "password": FIXTURE_ADMIN_PASSWORD})
    assert response.status_code == 200
    assert "Security token has expired, so action has been canceled. Please try again." in response.text
    assert 'id="login"' in response.text


def test_logout_ends_session(standin):
    session, token, _ = login(standin)
    session.get(standin.url + "/user/logout.php", params={"token": token}, timeout=TIMEOUT)
    assert 'id="login"' in session.get(standin.url + "/index.php", timeout=TIMEOUT).text


# -- users and rights -------------------------------------------------------------------


def test_user_list_finds_id_by_login(standin):
    session, _, _ = login(standin)
    assert user_id(session, standin, "crm_integration") == 4


def test_create_form_fields(standin):
    session, _, _ = login(standin)
    fields = form_fields(session.get(standin.url + "/user/card.php?action=create", timeout=TIMEOUT).text,
                         "createuser")
    assert fields["action"] == "add"
    assert fields["entity"] == "1"
    assert fields["admin"] == "0"
    assert len(fields["password"]) >= 12
    assert "api_key" in fields


def test_create_user_stores_hash_and_encrypted_key(pg_cluster, standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_new", api_key="NewUserKey-0123456789")
    row = pg_cluster.psql(f"SELECT pass_crypted, api_key, admin FROM llx_user WHERE rowid = {new_id}",
                          database="standin_fixture").strip().split("|")
    assert row[0].startswith("$2y$10$")
    assert row[1] == dolcrypt.encrypt("NewUserKey-0123456789", FIXTURE_INSTANCE_ID)
    assert row[2] == "0"
    assert user_rights(pg_cluster, "standin_fixture", new_id) == set()


def test_new_user_key_gets_403_without_rights(standin):
    session, token, _ = login(standin)
    create_user(session, standin, token, "standin_norights", api_key="NoRightsKey-0123456789")
    response = api_get(standin, "users/info", "NoRightsKey-0123456789")
    assert response.status_code == 403
    assert response.json()["error"] == FORBIDDEN_BODY


def test_create_duplicate_login_shows_error(standin):
    session, token, _ = login(standin)
    response = session.post(standin.url + "/user/card.php", timeout=TIMEOUT, allow_redirects=False,
                            data={"token": token, "action": "add", "entity": "1", "login": "jdoe",
                                  "lastname": "Doe", "password": "x-123456789012"})
    assert response.status_code == 200
    assert "Login jdoe already exists." in response.text
    assert 'name="createuser"' in response.text


def test_edit_whole_form_sets_api_key(standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_edit")
    edit_page = session.get(standin.url + f"/user/card.php?id={new_id}&action=edit", timeout=TIMEOUT).text
    fields = form_fields(edit_page, "updateuser")
    assert fields["action"] == "update"
    fields["api_key"] = "EditedKey-0123456789"
    fields["save"] = "Save"
    response = session.post(standin.url + f"/user/card.php?id={new_id}", data=fields, timeout=TIMEOUT)
    assert response.status_code == 200
    assert api_get(standin, "users/info", "EditedKey-0123456789").status_code == 403


def test_edit_partial_form_is_rejected(standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_partial")
    response = session.post(standin.url + f"/user/card.php?id={new_id}", timeout=TIMEOUT,
                            data={"token": token, "action": "update", "api_key": "PartialKey-0123456789",
                                  "save": "Save"})
    assert response.status_code == 200
    assert api_get(standin, "users/info", "PartialKey-0123456789").status_code == 401


def test_random_password_ajax(standin):
    session, token, _ = login(standin)
    response = session.get(standin.url + "/core/ajax/security.php", timeout=TIMEOUT,
                           params={"action": "getrandompassword", "generic": "1", "token": token})
    assert response.status_code == 200
    assert len(response.text) >= 12


def test_rights_add_by_id_then_api_passes(pg_cluster, standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_right", api_key="RightKey-0123456789")
    response = session.get(standin.url + "/user/perms.php", timeout=TIMEOUT, params={
        "id": new_id, "action": "addrights", "entity": 1, "rights": 251, "confirm": "yes", "token": token,
        "updatedmodulename": "user"})
    assert response.status_code == 200
    assert 251 in user_rights(pg_cluster, "standin_fixture", new_id)
    assert api_get(standin, "users/info", "RightKey-0123456789").status_code == 200


def test_rights_add_and_revoke_module(pg_cluster, standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_module")
    params = {"id": new_id, "entity": 1, "module": "banque", "confirm": "yes", "token": token}
    session.get(standin.url + "/user/perms.php", params={**params, "action": "addrights"}, timeout=TIMEOUT)
    assert user_rights(pg_cluster, "standin_fixture", new_id) == {111, 112, 113, 114, 115, 116, 117}
    session.get(standin.url + "/user/perms.php", params={**params, "action": "delrights"}, timeout=TIMEOUT)
    assert user_rights(pg_cluster, "standin_fixture", new_id) == set()


def test_rights_revoke_one(pg_cluster, standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_revoke")
    params = {"id": new_id, "entity": 1, "rights": 342, "confirm": "yes", "token": token}
    session.get(standin.url + "/user/perms.php", params={**params, "action": "addrights"}, timeout=TIMEOUT)
    session.get(standin.url + "/user/perms.php", params={**params, "action": "delrights"}, timeout=TIMEOUT)
    assert 342 not in user_rights(pg_cluster, "standin_fixture", new_id)


def test_rights_without_token_forbidden(standin):
    session, _, _ = login(standin)
    response = session.get(standin.url + "/user/perms.php", timeout=TIMEOUT,
                           params={"id": 3, "action": "addrights", "entity": 1, "rights": 251, "confirm": "yes"})
    assert response.status_code == 403


def test_rights_wrong_token_cancelled(pg_cluster, standin):
    session, _, _ = login(standin)
    response = session.get(standin.url + "/user/perms.php", timeout=TIMEOUT, params={
        "id": 3, "action": "addrights", "entity": 1, "rights": 251, "confirm": "yes", "token": "wrong"})
    assert response.status_code == 200
    assert 251 not in user_rights(pg_cluster, "standin_fixture", 3)


def test_rights_change_needs_admin(pg_cluster, standin):
    session, token, _ = login(standin, "jdoe", "JdoePass-2024!")
    session.get(standin.url + "/user/perms.php", timeout=TIMEOUT, params={
        "id": 3, "action": "addrights", "entity": 1, "rights": 251, "confirm": "yes", "token": token})
    assert 251 not in user_rights(pg_cluster, "standin_fixture", 3)


def test_delete_user(pg_cluster, standin):
    session, token, _ = login(standin)
    new_id = create_user(session, standin, token, "standin_delete")
    response = session.get(standin.url + "/user/card.php", allow_redirects=False, timeout=TIMEOUT, params={
        "id": new_id, "action": "confirm_delete", "confirm": "yes", "token": token})
    assert response.status_code == 302
    count = pg_cluster.psql(f"SELECT count(*) FROM llx_user WHERE rowid = {new_id}", database="standin_fixture")
    assert count.strip() == "0"


def test_deleted_user_session_ends(standin):
    admin_session, token, _ = login(standin)
    create_user(admin_session, standin, token, "standin_gone")
    gone_session, gone_token, _ = login(standin, "standin_gone", "Pass-word-1234")
    gone_id = user_id(admin_session, standin, "standin_gone")
    admin_session.get(standin.url + "/user/card.php", timeout=TIMEOUT, params={
        "id": gone_id, "action": "confirm_delete", "confirm": "yes", "token": token})
    assert 'id="login"' in gone_session.get(standin.url + "/index.php", timeout=TIMEOUT).text


# -- logos and an empty sandbox -------------------------------------------------------------


def test_logo_served_without_login(standin, documents_dir):
    response = requests.get(standin.url + "/viewimage.php", timeout=TIMEOUT, params={
        "modulepart": "mycompany", "file": "logos/thumbs/acme-logo_small.png"})
    assert response.status_code == 200
    assert response.content == (documents_dir / "mycompany/logos/thumbs/acme-logo_small.png").read_bytes()


def test_login_page_shows_small_logo(standin):
    page = requests.get(standin.url + "/", timeout=TIMEOUT).text
    assert "logos%2Fthumbs%2Facme-logo_small.png" in page


def test_logo_path_traversal_rejected(standin):
    response = requests.get(standin.url + "/viewimage.php", timeout=TIMEOUT, params={
        "modulepart": "mycompany", "file": "../install.lock"})
    assert response.status_code == 404


def test_empty_database_returns_503(pg_cluster, documents_dir):
    pg_cluster.create_role(OWNER, createdb=True)
    pg_cluster.create_database("standin_empty", OWNER)
    server = start_standin(pg_cluster, pg_cluster.uri("standin_empty", OWNER), documents_dir)
    try:
        page = requests.get(server.url + "/", timeout=TIMEOUT)
        api = api_get(server, "status", "any-key-123456789")
    finally:
        server.stop()
    assert page.status_code == 503
    assert api.status_code == 503


# -- as a process ---------------------------------------------------------------------


def test_process_serves_and_stops_on_sigterm(pg_cluster, fixture_db, documents_dir):
    from checkpoint.lab.pgcluster import wait_for

    state = make_shared_tmpdir("standin-process-")
    port_file = state / "port"
    env = {**os.environ, "STANDIN_DB_URI": fixture_db, "STANDIN_INSTANCE_ID": FIXTURE_INSTANCE_ID,
           "STANDIN_DOCUMENTS_DIR": str(documents_dir), "STANDIN_PORT": "0", "STANDIN_PORT_FILE": str(port_file),
           "PGPASSFILE": str(pg_cluster.pgpass_file), "STANDIN_AUTH_FAILURE_DELAY": "0"}
    process = subprocess.Popen([sys.executable, "-m", "checkpoint.lab.standin"], env=env,
                               stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        wait_for(lambda: port_file.exists() or process.poll() is not None, 20, "the stand-in's port file")
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        response = requests.get(url + "/api/index.php/users/info",
                                params={"DOLAPIKEY": FIXTURE_API_KEYS["admin"]}, timeout=TIMEOUT)
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=20)[1]
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(state, ignore_errors=True)
    assert response.status_code == 200
    assert process.returncode == 0
    assert "GET /api/index.php/users/info" in stderr
    assert FIXTURE_API_KEYS["admin"] not in stderr
    assert FIXTURE_INSTANCE_ID not in stderr
