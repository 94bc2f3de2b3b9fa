"""Guards against the real Dolibarr 20.0.2 fixture: in the restore transaction, on a live
sandbox through the command line, and in ``status``.

The expected const names and values here are Dolibarr's, written out by hand from what
was observed on a real 20.0.2, not read from ``checkpoint.guards``.
"""

from __future__ import annotations

import itertools
import json
import shutil

import pytest

from checkpoint.bastion import run_lifecycle_on_bastion
from checkpoint.guards import configured_guards, refresh_sql
from checkpoint.lab.standin import StandinServer
from checkpoint.outcome import Run
from tests.cli_helpers import run_invoke
from tests.conftest import FIXTURE_API_KEYS, FIXTURE_INSTANCE_ID, make_shared_tmpdir
from tests.db_helpers import extract_documents, restore_dump, table_checksums
from tests.test_bastion import (  # noqa: F401 (fixtures)
    bastion_pgpass,
    bastion_server,
    bastion_settings,
    client,
    client_key,
    jump_server,
    real_lifecycle,
    ssh_root,
    trusted,
)
from tests.test_lifecycle_script import lifecycle_server, prod_documents_source, setup  # noqa: F401 (fixtures)

OWNER = "guards_test_owner"
OTHER_INSTANCE_ID = "0123456789abcdef0123456789abcdef"
EXIT_GUARDS = 18
DATABASE_NUMBERS = itertools.count(1)

FAILING_GUARD = {"name": "crm_off", "apply": "SELECT 1/0", "check": "SELECT false"}
EXTRA_CONST_GUARD = {"name": "crm_sync_off", "description": "stop the CRM sync", "const": {"CRM_SYNC_ENABLED": "0"}}


def const_values(cluster, database: str, name: str) -> list[str]:
    return cluster.psql(f"SELECT value FROM llx_const WHERE name = '{name}' ORDER BY entity", database).splitlines()


def count(cluster, database: str, sql: str) -> int:
    return int(cluster.psql(sql, database).strip())


# -- inside the restore transaction ----------------------------------------------------------


def write_guards_sql(setup, extra: list[dict]) -> str:  # noqa: F811
    path = setup.work_parent.parent / "guards.sql"
    path.write_text(refresh_sql(configured_guards({"application_title": "SANDBOX", "extra": extra})))
    return str(path)


def test_refresh_applies_guards_before_commit(setup):  # noqa: F811
    result = setup.run("refresh", "--yes", "--db-only", LIFECYCLE_GUARDS_SQL=write_guards_sql(setup, []))

    cluster, database = setup.cluster, setup.sandbox_database
    assert result.returncode == 0, result.stderr
    assert "guards in effect, checked before COMMIT" in result.stdout
    assert const_values(cluster, database, "MAIN_DISABLE_ALL_MAILS") == ["1"]
    assert count(cluster, database, "SELECT count(*) FROM llx_notify_def") == 0
    assert count(cluster, database, "SELECT count(*) FROM llx_webhook_target WHERE status <> 0") == 0
    assert count(cluster, database, "SELECT count(*) FROM llx_cronjob WHERE status = 1") == 0


def test_failing_guard_rolls_restore_back(setup):  # noqa: F811
    sandbox_before = setup.sandbox_state()

    result = setup.run("refresh", "--yes", "--db-only", LIFECYCLE_GUARDS_SQL=write_guards_sql(setup, [FAILING_GUARD]))

    assert result.returncode == EXIT_GUARDS
    assert "[restore] failed: guard crm_off failed" in result.stderr
    assert "division by zero" in result.stderr
    assert "[restore] committed" not in result.stdout
    assert setup.sandbox_state() == sandbox_before


def test_guard_not_in_effect_rolls_restore_back(setup):  # noqa: F811
    sandbox_before = setup.sandbox_state()
    never_true = {"name": "never_in_effect", "apply": "SELECT 1", "check": "SELECT false"}

    result = setup.run("refresh", "--yes", "--db-only", LIFECYCLE_GUARDS_SQL=write_guards_sql(setup, [never_true]))

    assert result.returncode == EXIT_GUARDS
    assert "guards not in effect after applying them: never_in_effect" in result.stderr
    assert setup.sandbox_state() == sandbox_before


# -- a live sandbox through the command line ----------------------------------------------------


@pytest.fixture(scope="module")
def documents_dir(fixture_files):
    folder = make_shared_tmpdir("guards-documents-")
    yield extract_documents(fixture_files["documents"], folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def live(pg_cluster, fixture_files, documents_dir, tmp_path):
    """A sandbox database restored from the fixture, served by a stand-in, with a config for it."""
    database = f"guards_live_{next(DATABASE_NUMBERS)}"
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    uri = restore_dump(pg_cluster, fixture_files["dump"], database, OWNER)
    servers = []

    def serve(instance_id: str) -> str:
        server = StandinServer(uri, instance_id, documents_dir, auth_failure_delay=0, pgpassfile=pg_cluster.pgpass_file)
        server.start()
        servers.append(server)
        return server.url

    env_file = tmp_path / "agent.env"
    env_file.write_text(f"DOLIBARR_API_KEY={FIXTURE_API_KEYS['admin']}\n")
    config = {
        "sandbox": {"url": serve(FIXTURE_INSTANCE_ID)},
        "agent": {"login": "admin", "env_file": str(env_file)},
        "lifecycle": {"sandbox_db_uri": uri, "pgpassfile": str(pg_cluster.pgpass_file)},
        "lab": {"state_dir": str(tmp_path / "no-lab")},
        "guards": {"extra": [EXTRA_CONST_GUARD]},
    }

    def invoke(*args: str, **overrides):
        merged = {**config, **overrides}
        return run_invoke(list(args), merged, tmp_path)

    yield pg_cluster, database, invoke, serve
    for server in servers:
        server.stop()
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def statuses(result) -> dict[str, str]:
    document = json.loads(result.stdout)
    return {step["step"]: step["status"] for step in document["steps"]}


def test_guards_apply_changes_then_ok(live):
    invoke = live[2]

    first = invoke("guards.apply", "--json")
    second = invoke("guards.apply", "--json")

    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first)["guard mail_off"] == "changed"
    assert statuses(first)["guard crm_sync_off"] == "changed"
    assert second.returncode == 0, second.stdout + second.stderr
    assert set(statuses(second).values()) == {"ok"}


def test_extra_guard_applied(live):
    cluster, database, invoke, _ = live

    result = invoke("guards.apply")

    assert result.returncode == 0, result.stdout + result.stderr
    assert const_values(cluster, database, "CRM_SYNC_ENABLED") == ["0"]


def test_guards_show_lists_extra_guard(live):
    result = live[2]("guards.show", "--json")

    guards = {guard["name"]: guard for guard in json.loads(result.stdout)["guards"]}
    assert result.returncode == 0, result.stderr
    assert guards["crm_sync_off"]["origin"] == "configuration"
    assert guards["crm_sync_off"]["description"] == "stop the CRM sync"
    assert "mail_off" in guards


def test_status_guarded_after_apply(live):
    invoke = live[2]
    invoke("guards.apply")

    result = invoke("status", "--json")

    document = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert document["guarded"] is True
    assert document["guards_not_in_effect"] == []


def test_status_names_guard_turned_back_on(live):
    cluster, database, invoke, _ = live
    invoke("guards.apply")
    cluster.psql("UPDATE llx_const SET value = '0' WHERE name = 'MAIN_DISABLE_ALL_MAILS'", database)
    cluster.psql("DELETE FROM llx_const WHERE name = 'CRM_SYNC_ENABLED'", database)

    result = invoke("status", "--json")

    document = json.loads(result.stdout)
    assert result.returncode == 30
    assert document["guarded"] is False
    assert document["guards_not_in_effect"] == ["mail_off", "crm_sync_off"]
    assert "mail_off" in document["guards_detail"]


def test_guards_apply_with_failing_guard_changes_nothing(live):
    cluster, database, invoke, _ = live
    before = table_checksums(cluster, database)

    result = invoke("guards.apply", guards={"extra": [FAILING_GUARD]})

    assert result.returncode != 0
    assert "guard crm_off failed: division by zero" in result.stdout
    assert table_checksums(cluster, database) == before


# -- isolation from prod ------------------------------------------------------------------------


def test_isolated_false_when_prod_accepts_key(live):
    invoke, serve = live[2], live[3]
    invoke("guards.apply")
    prod_url = serve(FIXTURE_INSTANCE_ID)

    result = invoke("status", "--json", sandbox={"url": live_sandbox_url(invoke), "prod_url": prod_url})

    document = json.loads(result.stdout)
    assert result.returncode == 31
    assert document["isolated"] is False
    assert "accepts the agent's key" in document["isolated_detail"]


def test_isolated_true_when_prod_rejects_key(live):
    invoke, serve = live[2], live[3]
    invoke("guards.apply")
    prod_url = serve(OTHER_INSTANCE_ID)

    result = invoke("status", "--json", sandbox={"url": live_sandbox_url(invoke), "prod_url": prod_url})

    document = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert document["isolated"] is True
    assert document["armed"] is True


def live_sandbox_url(invoke) -> str:
    return json.loads(invoke("status", "--json").stdout)["sandbox_url"]


# -- on a bastion -------------------------------------------------------------------------------


def test_bastion_refresh_uploads_guards(trusted, bastion_server, setup):  # noqa: F811
    pgpass = bastion_pgpass(setup, setup.work_parent.parent)
    settings = bastion_settings(trusted, bastion_server, pgpassfile=str(pgpass), work_dir=str(setup.work_parent))
    guards_sql = setup.work_parent.parent / "bastion-guards.sql"
    guards_sql.write_text(refresh_sql(configured_guards({"application_title": "SANDBOX", "extra": []})))

    returncode = run_lifecycle_on_bastion(real_lifecycle(setup), settings, Run("refresh"), db_only=True,
                                          guards_sql=guards_sql)

    assert returncode == 0
    assert const_values(setup.cluster, setup.sandbox_database, "MAIN_APPLICATION_TITLE") == ["SANDBOX"]
    assert const_values(setup.cluster, setup.sandbox_database, "MAIN_DISABLE_ALL_MAILS") == ["1"]
