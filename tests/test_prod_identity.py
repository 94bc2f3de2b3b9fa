"""provision rejects a sandbox that reports prod's instance id, whatever its URL."""

from __future__ import annotations

import pytest

from checkpoint.dolibarr_api import session_cookie_name
from checkpoint.lab.standin import StandinServer
from tests.cli_helpers import run_invoke
from tests.conftest import FIXTURE_ADMIN_PASSWORD, FIXTURE_INSTANCE_ID
from tests.db_helpers import restore_dump

OTHER_INSTANCE_ID = "fedcba9876543210fedcba9876543210"


@pytest.fixture(scope="module")
def fixture_uri(pg_cluster, fixture_files):
    return restore_dump(pg_cluster, fixture_files["dump"], "identity_fixture", "identity_owner")


@pytest.fixture
def two_instances(pg_cluster, fixture_uri, fixture_documents_dir, request):
    sandbox_id = request.param
    servers = [
        StandinServer(fixture_uri, instance_id, fixture_documents_dir, auth_failure_delay=0,
                      pgpassfile=pg_cluster.pgpass_file)
        for instance_id in (FIXTURE_INSTANCE_ID, sandbox_id)
    ]
    for server in servers:
        server.start()
    yield servers[0].url, servers[1].url
    for server in servers:
        server.stop()


@pytest.mark.parametrize("two_instances", [FIXTURE_INSTANCE_ID], indirect=True)
def test_provision_rejects_prod_instance(tmp_path, two_instances):
    prod_url, sandbox_url = two_instances
    secrets_file = tmp_path / "sandbox-secrets.env"
    secrets_file.write_text(f"DOLIBARR_ADMIN_PASSWORD={FIXTURE_ADMIN_PASSWORD}\n")
    secrets_file.chmod(0o600)
    config = {
        "sandbox": {"url": sandbox_url, "prod_url": prod_url, "secrets_file": str(secrets_file)},
        "agent": {"env_file": str(tmp_path / ".env"), "key_file": str(tmp_path / "api-key")},
    }

    result = run_invoke(["provision", "--json"], config, tmp_path)

    assert result.returncode == 3, result.stdout + result.stderr
    assert "same instance unique id as prod" in result.stdout


@pytest.mark.parametrize("two_instances", [OTHER_INSTANCE_ID], indirect=True)
def test_session_cookie_names_differ_per_instance(two_instances):
    prod_url, sandbox_url = two_instances

    prod_cookie = session_cookie_name(prod_url, 10)
    sandbox_cookie = session_cookie_name(sandbox_url, 10)

    assert prod_cookie.startswith("DOLSESSID_")
    assert sandbox_cookie.startswith("DOLSESSID_")
    assert prod_cookie != sandbox_cookie
