"""``provision_agent`` with real Chromium, a real PostgreSQL and the Dolibarr stand-in.

The sandbox database is a restore of the real Dolibarr 20.0.2 fixture. Tests share
it and run in file order, but each one checks or sets the state it depends on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from checkpoint.agent_files import pending_key_path, read_key_file, write_key_file
from checkpoint.dolibarr_api import Reason, check_agent_key
from checkpoint.lab import dolcrypt
from checkpoint.lab.standin import StandinServer
from checkpoint.outcome import Run, Status, StepFailed
from checkpoint import exceptions
from checkpoint.provision import api_key as api_key_module
from checkpoint.provision import browser as browser_module
from checkpoint.provision import check_prerequisites, provision_agent
from checkpoint.provision import users as users_module
from checkpoint.provision.users import MARK_FIRSTNAME, MARK_LASTNAME
from checkpoint.provision.browser import AdminBrowser
from checkpoint.settings import load_settings
from tests.cli_helpers import REPO_ROOT, assert_one_line_error, run_invoke
from tests.conftest import FIXTURE_ADMIN_PASSWORD, FIXTURE_INSTANCE_ID, make_shared_tmpdir

DATABASE = "provision_sandbox"
OWNER = "provision_owner"
AGENT = "ai_agent_sandbox"
RIGHTS = (111, 251)
STEPS = ["check_prerequisites", "open_admin_session", "ensure_agent_user", "ensure_agent_rights", "ensure_agent_api_key"]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sandbox(pg_cluster, fixture_files):
    """Restore the fixture into a fresh database and serve it with the stand-in."""
    pg_cluster.create_role(OWNER)
    pg_cluster.psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    pg_cluster.create_database(DATABASE, OWNER)
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         "-d", pg_cluster.uri(DATABASE, OWNER), str(fixture_files["dump"])],
        check=True, capture_output=True, env={**os.environ, **pg_cluster.client_env()},
    )
    documents = make_shared_tmpdir("checkpoint-provision-documents-")
    server = StandinServer(
        pg_cluster.uri(DATABASE, OWNER), FIXTURE_INSTANCE_ID, documents,
        auth_failure_delay=0, pgpassfile=pg_cluster.pgpass_file,
    )
    server.start()
    yield server
    server.stop()
    shutil.rmtree(documents, ignore_errors=True)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("provision")


def make_settings(sandbox, folder: Path, password: str | None = FIXTURE_ADMIN_PASSWORD, *, save_trace: bool = False,
                  **agent):
    secrets = folder / "secrets.env"
    lines = ["DOLIBARR_ADMIN_LOGIN=admin"] + ([f"DOLIBARR_ADMIN_PASSWORD={password}"] if password else [])
    secrets.write_text("\n".join(lines) + "\n")
    secrets.chmod(0o600)
    return load_settings({"checkpoint": provision_config(sandbox.url, folder, secrets, save_trace=save_trace, **agent)})


def provision_config(url: str, folder: Path, secrets: Path, *, save_trace: bool = False, **agent) -> dict:
    return {
        "sandbox": {"url": url, "secrets_file": str(secrets), "http_timeout": 15},
        "agent": {"login": AGENT, "rights": list(RIGHTS), "key_file": str(folder / "api-key"), **agent},
        "provision": {"artifacts_dir": str(folder / "artifacts"), "save_trace": save_trace},
    }


def provision(settings, **options) -> Run:
    run = Run("provision")
    try:
        provision_agent(settings, run, **options)
    except StepFailed:
        pass
    return run


def statuses(run: Run) -> dict[str, Status]:
    return {outcome.step: outcome.status for outcome in run.outcomes}


def agent_id(pg_cluster) -> int | None:
    output = pg_cluster.psql(f"SELECT rowid FROM llx_user WHERE login = '{AGENT}'", DATABASE).strip()
    return int(output) if output else None


def agent_rights(pg_cluster) -> set[int]:
    output = pg_cluster.psql(
        f"SELECT fk_id FROM llx_user_rights r JOIN llx_user u ON u.rowid = r.fk_user WHERE u.login = '{AGENT}'",
        DATABASE,
    )
    return {int(line) for line in output.split()}


def artifact_contents(artifacts_dir: Path) -> dict[str, bytes]:
    """Return every saved artifact's bytes by name, with each trace archive unzipped."""
    contents = {}
    for path in sorted(artifacts_dir.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    contents[f"{path}:{name}"] = archive.read(name)
        else:
            contents[str(path)] = path.read_bytes()
    return contents


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def first_run(sandbox, work_dir, pg_cluster):
    assert agent_id(pg_cluster) is None, "the fixture must not have the agent yet"
    settings = make_settings(sandbox, work_dir)
    return settings, provision(settings)


def test_first_run_succeeds(first_run):
    _, run = first_run
    assert [outcome.step for outcome in run.outcomes] == STEPS
    assert not run.failed, [outcome.message for outcome in run.outcomes]


def test_first_run_creates_agent(first_run, pg_cluster):
    _, run = first_run
    assert statuses(run)["ensure_agent_user"] is Status.CHANGED
    assert agent_id(pg_cluster) is not None


def test_first_run_grants_exact_rights(first_run, pg_cluster):
    assert agent_rights(pg_cluster) == set(RIGHTS)


def test_first_run_writes_private_key_file(first_run):
    settings, _ = first_run
    assert mode(settings.agent.key_file) == 0o600


def test_stored_key_authenticates_agent(first_run, sandbox):
    settings, _ = first_run
    check = check_agent_key(sandbox.url, read_key_file(settings.agent.key_file), AGENT, 10)
    assert check.armed, check.detail


def test_second_run_changes_nothing(first_run, pg_cluster):
    settings, _ = first_run
    key_before = read_key_file(settings.agent.key_file)
    run = provision(settings)
    assert statuses(run) == {step: Status.OK for step in STEPS}
    assert read_key_file(settings.agent.key_file) == key_before
    assert agent_rights(pg_cluster) == set(RIGHTS)


def test_rotate_replaces_key(first_run, sandbox):
    settings, _ = first_run
    old_key = read_key_file(settings.agent.key_file)
    run = provision(settings, rotate=True)
    new_key = read_key_file(settings.agent.key_file)
    assert statuses(run)["ensure_agent_api_key"] is Status.CHANGED
    assert new_key != old_key
    assert check_agent_key(sandbox.url, new_key, AGENT, 10).armed
    assert check_agent_key(sandbox.url, old_key, AGENT, 10).reason is Reason.KEY_REJECTED


def test_rights_changed_by_hand_are_repaired(first_run, pg_cluster):
    settings, _ = first_run
    user = agent_id(pg_cluster)
    pg_cluster.psql(
        f"INSERT INTO llx_user_rights (entity, fk_user, fk_id) VALUES (1, {user}, 121);"
        f"DELETE FROM llx_user_rights WHERE fk_user = {user} AND fk_id = 251;",
        DATABASE,
    )
    run = provision(settings)
    assert statuses(run)["ensure_agent_rights"] is Status.CHANGED
    assert agent_rights(pg_cluster) == set(RIGHTS)


def test_lost_key_file_gets_new_key(first_run, sandbox):
    settings, _ = first_run
    settings.agent.key_file.unlink()
    run = provision(settings)
    assert statuses(run)["ensure_agent_api_key"] is Status.CHANGED
    assert check_agent_key(sandbox.url, read_key_file(settings.agent.key_file), AGENT, 10).armed


def test_unverified_key_is_not_stored(first_run, pg_cluster):
    settings, _ = first_run
    stored_before = settings.agent.key_file.read_bytes()
    pg_cluster.psql(f"UPDATE llx_user SET statut = 0 WHERE login = '{AGENT}'", DATABASE)
    try:
        run = provision(settings, rotate=True)
    finally:
        pg_cluster.psql(f"UPDATE llx_user SET statut = 1 WHERE login = '{AGENT}'", DATABASE)
    outcome = run.outcomes[-1]
    assert outcome.step == "ensure_agent_api_key"
    assert outcome.status is Status.FAILED
    assert settings.agent.key_file.read_bytes() == stored_before

    assert not pending_key_path(settings.agent.key_file).exists()
    assert "run invoke provision" not in outcome.message


@pytest.fixture(scope="module")
def wrong_password_run(sandbox, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wrong-password")
    settings = make_settings(sandbox, folder, password="Wrong-Pass-987")
    return settings, provision(settings)


def test_wrong_password_fails_login(wrong_password_run):
    settings, run = wrong_password_run
    outcome = run.outcomes[-1]
    assert outcome.step == "open_admin_session"
    assert outcome.status is Status.FAILED
    assert "Bad value for login or password" in outcome.message
    assert str(settings.secrets_file) in outcome.message


def test_wrong_password_writes_no_key(wrong_password_run):
    settings, _ = wrong_password_run
    assert not settings.agent.key_file.exists()


def test_wrong_password_saves_private_artifacts(wrong_password_run):
    settings, run = wrong_password_run
    folders = list(settings.artifacts_dir.iterdir())
    assert len(folders) == 1
    folder = folders[0]
    assert str(folder) in run.outcomes[-1].message
    assert mode(folder) == 0o700
    assert sorted(path.name for path in folder.iterdir()) == ["screenshot.png"]
    assert {mode(path) for path in folder.iterdir()} == {0o600}


def test_artifacts_never_hold_password(wrong_password_run):
    settings, _ = wrong_password_run
    for name, data in artifact_contents(settings.artifacts_dir).items():
        assert b"Wrong-Pass-987" not in data, name


def test_no_password_without_display_fails_at_once(sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    settings = make_settings(sandbox, tmp_path, password=None)
    run = provision(settings)
    assert len(run.outcomes) == 1
    outcome = run.outcomes[0]
    assert outcome.status is Status.FAILED
    assert str(settings.secrets_file) in outcome.message
    assert "DOLIBARR_ADMIN_PASSWORD" in outcome.message
    assert not settings.artifacts_dir.exists()


def test_headless_without_password_fails_at_once(sandbox, tmp_path):
    settings = make_settings(sandbox, tmp_path, password=None)
    run = provision(settings, headed=False)
    assert len(run.outcomes) == 1
    assert str(settings.secrets_file) in run.outcomes[0].message


def test_missing_right_fails_with_its_id(sandbox, tmp_path):
    settings = make_settings(sandbox, tmp_path, rights=[111, 251, 999999])
    run = provision(settings)
    outcome = run.outcomes[-1]
    assert outcome.step == "ensure_agent_rights"
    assert outcome.status is Status.FAILED
    assert "999999" in outcome.message


def test_password_and_key_never_logged(sandbox, tmp_path, caplog, capsys):
    settings = make_settings(sandbox, tmp_path)
    caplog.set_level(logging.DEBUG)
    run = provision(settings, rotate=True)
    key = read_key_file(settings.agent.key_file)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err] + [outcome.message for outcome in run.outcomes]
    assert not run.failed
    for text in texts:
        assert FIXTURE_ADMIN_PASSWORD not in text
        assert key not in text


def test_failure_artifacts_mask_secrets(tmp_path):
    browser = AdminBrowser("http://127.0.0.1:9", Path("/usr/bin/chromium"), 15, tmp_path / "artifacts")
    secret = "K3yShownOnThePage0123456789abcdef"
    try:
        browser.launch(headless=True)
        browser.page.set_content(
            f"<p>API key: {secret}</p><form name='updateuser'><input name='api_key' value='{secret}'>"
            "<input type='password' name='password' value='typed-password'></form>"
        )
        browser.seal_trace(secret)
        folder = browser.save_failure_artifacts()
        page_after = browser.page.inner_text("body") + browser.value("[name=api_key]") + browser.value("[name=password]")
    finally:
        browser.close()
    assert (folder / "screenshot.png").is_file()
    assert secret not in page_after
    assert "typed-password" not in page_after


# -- an existing user is never taken over ---------------------------------------------


def user_state(pg_cluster, login: str) -> str:
    """Return the user's API key, admin flag, names and rights, as one comparable text."""
    return pg_cluster.psql(
        "SELECT u.api_key, u.admin, u.firstname, u.lastname, string_agg(r.fk_id::text, ',' ORDER BY r.fk_id)"
        f" FROM llx_user u LEFT JOIN llx_user_rights r ON r.fk_user = u.rowid WHERE u.login = '{login}'"
        " GROUP BY u.rowid",
        DATABASE,
    )


def test_created_agent_carries_mark(first_run, pg_cluster):
    names = pg_cluster.psql(f"SELECT firstname || '|' || lastname FROM llx_user WHERE login = '{AGENT}'", DATABASE)
    assert names.strip() == f"{MARK_FIRSTNAME}|{MARK_LASTNAME}"


@pytest.mark.parametrize("login", ["admin", "jdoe", "crm_integration"])
def test_existing_user_is_not_taken_over(first_run, sandbox, tmp_path, pg_cluster, login):
    before = user_state(pg_cluster, login)
    settings = make_settings(sandbox, tmp_path, login=login)
    run = provision(settings)
    outcome = run.outcomes[-1]
    assert outcome.step == "ensure_agent_user"
    assert outcome.status is Status.FAILED
    assert repr(login) in outcome.message
    assert "choose another checkpoint.agent.login" in outcome.message
    assert user_state(pg_cluster, login) == before
    assert not settings.agent.key_file.exists()


def test_marked_administrator_is_not_demoted(first_run, sandbox, tmp_path, pg_cluster):
    pg_cluster.psql(f"UPDATE llx_user SET admin = 1 WHERE login = '{AGENT}'", DATABASE)
    try:
        before = user_state(pg_cluster, AGENT)
        run = provision(make_settings(sandbox, tmp_path))
        after = user_state(pg_cluster, AGENT)
    finally:
        pg_cluster.psql(f"UPDATE llx_user SET admin = 0 WHERE login = '{AGENT}'", DATABASE)
    outcome = run.outcomes[-1]
    assert outcome.step == "ensure_agent_user"
    assert outcome.status is Status.FAILED
    assert "is an administrator" in outcome.message
    assert after == before


# -- the new key is never lost ------------------------------------------------------------


def stored_api_key(pg_cluster) -> str:
    return pg_cluster.psql(f"SELECT api_key FROM llx_user WHERE login = '{AGENT}'", DATABASE).strip()


@pytest.mark.parametrize("place", ["folder", "under_a_file"])
def test_unwritable_key_file_fails_before_changes(first_run, sandbox, tmp_path, pg_cluster, place):
    if place == "folder":
        key_file = tmp_path / "api-key"
        key_file.mkdir()
    else:
        (tmp_path / "blocker").write_text("")
        key_file = tmp_path / "blocker" / "agent" / "api-key"
    stored_before = stored_api_key(pg_cluster)
    settings = make_settings(sandbox, tmp_path, key_file=str(key_file))
    run = provision(settings, rotate=True)
    assert [outcome.step for outcome in run.outcomes] == ["check_prerequisites"]
    assert str(key_file) in run.outcomes[0].message
    assert stored_api_key(pg_cluster) == stored_before


def test_pending_key_survives_crash(first_run, sandbox, pg_cluster, monkeypatch):
    settings, _ = first_run
    pending = pending_key_path(settings.agent.key_file)
    key_before = read_key_file(settings.agent.key_file)

    def crash(*args):
        raise RuntimeError("simulated crash before the pending key is renamed")

    monkeypatch.setattr(api_key_module, "promote_pending_key", crash)
    with pytest.raises(RuntimeError):
        provision_agent(settings, Run("provision"), rotate=True)
    monkeypatch.undo()
    assert read_key_file(settings.agent.key_file) == key_before
    assert mode(pending) == 0o600
    pending_key = read_key_file(pending)
    stored_after_crash = stored_api_key(pg_cluster)

    run = provision(settings)
    assert statuses(run)["ensure_agent_api_key"] is Status.CHANGED
    assert read_key_file(settings.agent.key_file) == pending_key
    assert not pending.exists()
    assert stored_api_key(pg_cluster) == stored_after_crash
    assert check_agent_key(sandbox.url, pending_key, AGENT, 10).armed


def test_key_file_write_error_is_config_error(tmp_path):
    (tmp_path / "blocker").write_text("")
    with pytest.raises(exceptions.ConfigError, match="blocker"):
        write_key_file(tmp_path / "blocker" / "api-key", "K" * 32)


# -- failure artifacts hold no secret ---------------------------------------------------


def test_saved_trace_never_holds_new_key(first_run, sandbox, tmp_path, pg_cluster):
    settings = make_settings(sandbox, tmp_path, save_trace=True)
    pg_cluster.psql(f"UPDATE llx_user SET statut = 0 WHERE login = '{AGENT}'", DATABASE)
    try:
        run = provision(settings)
    finally:
        pg_cluster.psql(f"UPDATE llx_user SET statut = 1 WHERE login = '{AGENT}'", DATABASE)
    assert run.outcomes[-1].step == "ensure_agent_api_key"
    new_key = dolcrypt.decrypt(stored_api_key(pg_cluster), FIXTURE_INSTANCE_ID).encode()
    contents = artifact_contents(settings.artifacts_dir)
    assert any(name.endswith("trace.network") for name in contents), sorted(contents)
    for name, data in contents.items():
        assert new_key not in data, name
        assert FIXTURE_ADMIN_PASSWORD.encode() not in data, name


def test_saved_trace_never_holds_new_password(first_run, sandbox, tmp_path, monkeypatch):
    password = "Agent-Password-" + uuid.uuid4().hex
    monkeypatch.setattr(users_module, "generate_password", lambda: password)
    # Without a last name, Dolibarr shows the create form again, with the password filled in.
    monkeypatch.setattr(users_module, "MARK_LASTNAME", "")
    settings = make_settings(sandbox, tmp_path, save_trace=True, login="ai_agent_trace")
    run = provision(settings)
    assert run.outcomes[-1].step == "ensure_agent_user"
    assert run.outcomes[-1].status is Status.FAILED
    contents = artifact_contents(settings.artifacts_dir)
    assert any(name.endswith("screenshot.png") for name in contents), sorted(contents)
    for name, data in contents.items():
        assert password.encode() not in data, name


def test_default_artifacts_are_screenshot_only(first_run, sandbox, tmp_path, pg_cluster):
    settings = make_settings(sandbox, tmp_path, rights=[111, 251, 999999])
    provision(settings)
    names = [path.name for path in settings.artifacts_dir.rglob("*") if path.is_file()]
    assert names == ["screenshot.png"]


# -- prerequisites ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sandbox_down_fails_before_chromium(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(SimpleNamespace(url=url), tmp_path)
    run = provision(settings)
    assert [outcome.step for outcome in run.outcomes] == ["check_prerequisites"]
    expected = f"cannot connect to {url}: is the sandbox running? For the built-in lab: invoke lab.up"
    assert run.outcomes[0].message == expected
    assert not settings.artifacts_dir.exists()


def test_missing_secrets_file_is_not_found(sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    settings = make_settings(sandbox, tmp_path)
    settings.secrets_file.unlink()
    run = provision(settings)
    assert [outcome.step for outcome in run.outcomes] == ["check_prerequisites"]
    assert f"secrets file {settings.secrets_file} not found" in run.outcomes[0].message


def test_loose_secrets_file_gets_warning(sandbox, tmp_path):
    settings = make_settings(sandbox, tmp_path)
    settings.secrets_file.chmod(0o644)
    outcome = check_prerequisites(settings, None)
    assert outcome.status is Status.OK
    assert f"warning: secrets file {settings.secrets_file} is mode 644" in outcome.message
    assert mode(settings.secrets_file) == 0o644


def test_reset_checks_provision_before_refresh(tmp_path):
    marker = tmp_path / "lifecycle-ran"
    script = tmp_path / "lifecycle.sh"
    script.write_text(f"#!/bin/bash\ntouch {marker}\n")
    config = {
        "sandbox": {"url": "http://127.0.0.1:9", "secrets_file": str(tmp_path / "missing.env")},
        "agent": {"key_file": str(tmp_path / "api-key"), "env_file": str(tmp_path / "agent.env")},
        "lifecycle": {
            "script": str(script),
            "prod_db_uri": "postgresql://prod@127.0.0.1:9/prod",
            "sandbox_db_uri": "postgresql://sandbox@127.0.0.1:9/sandbox",
            "prod_documents_dir": str(tmp_path / "prod-documents"),
            "sandbox_documents_dir": str(tmp_path / "sandbox-documents"),
        },
    }
    result = run_invoke(["reset", "--yes"], config, tmp_path, env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert_one_line_error(result, f"secrets file {tmp_path / 'missing.env'} not found")
    assert not marker.exists()


def test_exceptions_moved_with_same_names():
    assert browser_module.BrowserError is exceptions.BrowserError
    assert api_key_module.KeyNotAcceptedError is exceptions.KeyNotAcceptedError
    assert issubclass(exceptions.LoginError, exceptions.ConfigError)


# -- interruption -----------------------------------------------------------------------


def processes_with(marker: str) -> list[int]:
    """Return the ids of processes whose environment contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environment:
            found.append(int(entry.name))
    return found


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def interrupted_provision(sandbox, pg_cluster, folder: Path, signum: int) -> tuple[int, str]:
    """Run ``invoke provision`` for a new agent, signal its process group once the user exists."""
    login = f"ai_agent_{signal.Signals(signum).name.lower()}"
    secrets = folder / "secrets.env"
    secrets.write_text(f"DOLIBARR_ADMIN_PASSWORD={FIXTURE_ADMIN_PASSWORD}\n")
    secrets.chmod(0o600)
    config_file = folder / "checkpoint.json"
    config = provision_config(sandbox.url, folder, secrets, login=login)
    config_file.write_text(json.dumps({"checkpoint": config}))
    marker = f"CHECKPOINT_TEST_RUN={uuid.uuid4().hex}"
    name, value = marker.split("=")
    output = folder / "output.txt"

    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "invoke", "-r", str(REPO_ROOT), "-f", str(config_file), "provision"],
            cwd=folder, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, name: value},
        )
        try:
            exists = f"SELECT count(*) FROM llx_user WHERE login = '{login}'"
            wait_for(lambda: process.poll() is not None or pg_cluster.psql(exists, DATABASE).strip() == "1",
                     f"user {login} in the database")
            os.killpg(process.pid, signum)
            returncode = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    wait_for(lambda: not processes_with(marker), "the browser and the driver to exit", timeout=30)
    return returncode, output.read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_reports_interruption(sandbox, pg_cluster, tmp_path, signum):
    returncode, output = interrupted_provision(sandbox, pg_cluster, tmp_path, signum)
    assert returncode == 128 + signum, output
    assert f"provision interrupted by {signal.Signals(signum).name}" in output
    assert "Traceback" not in output
    assert "Future exception was never retrieved" not in output
    assert not (tmp_path / "api-key").exists()
