"""status names the precise reason against a Dolibarr stand-in serving the real fixture."""

from __future__ import annotations

import json

import pytest

from checkpoint.lab.standin import StandinServer
from tests.cli_helpers import run_invoke
from tests.conftest import FIXTURE_API_KEYS, FIXTURE_INSTANCE_ID
from tests.db_helpers import restore_dump

OWNER = "status_test_owner"


@pytest.fixture(scope="module")
def serve(pg_cluster, fixture_files, fixture_documents_dir):
    """Start stand-ins on copies of the fixture; ``serve(database, sql)`` runs ``sql`` there first."""
    servers = []

    def start(database: str, sql: str = "") -> str:
        uri = restore_dump(pg_cluster, fixture_files["dump"], database, OWNER)
        if sql:
            pg_cluster.psql(sql, database)
        server = StandinServer(uri, FIXTURE_INSTANCE_ID, fixture_documents_dir, auth_failure_delay=0,
                               pgpassfile=pg_cluster.pgpass_file)
        server.start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def fixture_url(serve):
    return serve("status_fixture")


def status_for(tmp_path, url, key, login):
    env_file = tmp_path / "agent.env"
    env_file.write_text(f"DOLIBARR_API_KEY={key}\n")
    config = {"sandbox": {"url": url}, "agent": {"login": login, "env_file": str(env_file)}}
    result = run_invoke(["status", "--json"], config, tmp_path)
    assert "Traceback" not in result.stderr
    assert key not in result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def test_status_armed_with_fixture_key(tmp_path, fixture_url):
    code, document = status_for(tmp_path, fixture_url, FIXTURE_API_KEYS["admin"], "admin")

    assert code == 0
    assert document["armed"] is True
    assert document["live"] is True
    assert document["latency_seconds"] >= 0


def test_status_key_of_other_user(tmp_path, fixture_url):
    code, document = status_for(tmp_path, fixture_url, FIXTURE_API_KEYS["admin"], "ai_agent_sandbox")

    assert code == 24
    assert document["reason"] == "wrong_user"
    assert "'admin'" in document["detail"]


def test_status_unknown_key(tmp_path, fixture_url):
    code, document = status_for(tmp_path, fixture_url, "no-such-key-0123456789", "ai_agent_sandbox")

    assert code == 22
    assert document["reason"] == "key_rejected"


def test_status_key_without_user_read_right(tmp_path, fixture_url):
    code, document = status_for(tmp_path, fixture_url, FIXTURE_API_KEYS["crm_integration"], "crm_integration")

    assert code == 23
    assert document["reason"] == "missing_right"
    assert "251" in document["detail"]


def test_status_api_module_off(tmp_path, serve):
    url = serve("status_api_off", "DELETE FROM llx_const WHERE name = 'MAIN_MODULE_API'")

    code, document = status_for(tmp_path, url, FIXTURE_API_KEYS["admin"], "admin")

    assert code == 13
    assert document["reason"] == "api_module_off"
    assert document["live"] is True
    assert "enable module API" in document["detail"]
