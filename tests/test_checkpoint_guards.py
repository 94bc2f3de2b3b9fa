"""Checkpoints keep the guards: save rejects an unguarded sandbox, and rewind an unguarded checkpoint.

The lab is refreshed from the real Dolibarr 20.0.2 fixture, so every default guard is
in effect, and the tests drive the real CLI against its PostgreSQL server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkpoint.bastion import run_lifecycle_on_bastion
from checkpoint.guards import Guard, check_only_sql
from checkpoint.lab.lab import SANDBOX_DATABASE, SANDBOX_OWNER
from checkpoint.outcome import Run, StepFailed
from tests.cli_helpers import fixture_lab, run_invoke
from tests.db_helpers import table_checksums
from tests.test_bastion import (  # noqa: F401  (pytest fixtures)
    bastion_server,
    bastion_settings,
    client,
    client_key,
    jump_server,
    ssh_root,
    trusted,
)
from tests.test_checkpoint_bastion import lifecycle_for
from tests.test_checkpoint_script import (  # noqa: F401  (pytest fixtures)
    checkpoint_names,
    checkpoint_server,
    dump_setup,
    saved,
    setup,
)

EXIT_GUARDS = 18
LATE_GUARD = {"name": "late_guard", "description": "configured after the save", "const": {"LATE_GUARD_FLAG": "1"}}


@pytest.fixture(scope="module")
def lab(fixture_files):
    with fixture_lab(fixture_files, "checkpoint-guards") as (lab, config, config_dir):

        def invoke(*args: str, guards: dict | None = None):
            return run_invoke(list(args), {**config, **({"guards": guards} if guards else {})}, config_dir)

        refresh = invoke("refresh", "--yes")
        assert refresh.returncode == 0, refresh.stdout + refresh.stderr
        # Save checks the agent's key first, so the agent must exist.
        provision = invoke("provision")
        assert provision.returncode == 0, provision.stdout + provision.stderr
        yield lab, invoke


def checkpoint_count(invoke) -> int:
    listed = invoke("checkpoint.list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return len(json.loads(listed.stdout)["checkpoints"])


def databases(cluster) -> set[str]:
    return set(cluster.psql("SELECT datname FROM pg_database").split())


@pytest.fixture(scope="module")
def rejected_save(lab):
    """Turn mail back on by hand, try to save, then put the guard back."""
    lab_paths, invoke = lab
    cluster = lab_paths.cluster
    cluster.psql("UPDATE llx_const SET value = '0' WHERE name = 'MAIN_DISABLE_ALL_MAILS'", SANDBOX_DATABASE, SANDBOX_OWNER)
    before = databases(cluster)
    result = invoke("checkpoint.save")
    after = databases(cluster)
    count = checkpoint_count(invoke)
    applied = invoke("guards.apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return result, before, after, count


def test_save_rejected_when_guard_off(rejected_save):
    result = rejected_save[0]

    assert result.returncode == EXIT_GUARDS, result.stdout + result.stderr


def test_save_rejection_names_guard_and_fix(rejected_save):
    output = rejected_save[0].stdout + rejected_save[0].stderr

    assert "mail_off" in output
    assert "invoke guards.apply" in output


def test_rejected_save_creates_no_checkpoint(rejected_save):
    _, before, after, count = rejected_save

    assert count == 0
    assert after == before


@pytest.fixture(scope="module")
def rejected_rewind(lab, rejected_save):
    """Save with every guard in effect, then configure one more guard and rewind."""
    lab_paths, invoke = lab
    cluster = lab_paths.cluster
    saved = invoke("checkpoint.save")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    invoke("guards.apply", guards={"extra": [LATE_GUARD]})
    cluster.psql("INSERT INTO llx_societe (nom, entity, datec) VALUES ('After Save', 1, now())",
                 SANDBOX_DATABASE, SANDBOX_OWNER)
    before = table_checksums(cluster, SANDBOX_DATABASE)
    result = invoke("rewind", "--yes", guards={"extra": [LATE_GUARD]})
    return result, before


def test_rewind_rejected_when_checkpoint_lacks_guard(rejected_rewind):
    result = rejected_rewind[0]

    assert result.returncode == EXIT_GUARDS, result.stdout + result.stderr


def test_rewind_rejection_names_guard(rejected_rewind):
    output = rejected_rewind[0].stdout + rejected_rewind[0].stderr

    assert "late_guard" in output


def test_rejected_rewind_leaves_sandbox_unchanged(lab, rejected_rewind):
    _, before = rejected_rewind

    assert table_checksums(lab[0].cluster, SANDBOX_DATABASE) == before


def test_rejected_rewind_drops_clone(lab, rejected_rewind):
    assert f"{SANDBOX_DATABASE}__rewind" not in databases(lab[0].cluster)


def test_guarded_checkpoint_rewinds(lab, rejected_rewind):
    lab_paths, invoke = lab

    result = invoke("rewind", "--yes", "--json")
    steps = {step["step"]: step["status"] for step in json.loads(result.stdout)["steps"]}
    customers = lab_paths.cluster.psql("SELECT count(*) FROM llx_societe WHERE nom = 'After Save'", SANDBOX_DATABASE)

    assert result.returncode == 0, result.stdout
    assert steps["rewind"] == "changed", result.stdout
    assert steps["verify_api_key"] == "ok", result.stdout
    assert customers.strip() == "0"


# -- the dump path, without CREATEDB, on the script directly --------------------------------------


def flag_check_sql(setup) -> str:
    """Write check SQL for one guard that is in effect while table guard_flag exists."""
    guard = Guard("flag_guard", "table guard_flag exists", "CREATE TABLE guard_flag ();",
                  "SELECT to_regclass('public.guard_flag') IS NOT NULL")
    path = setup.work_parent / "guards-check.sql"
    path.write_text(check_only_sql([guard]))
    return str(path)


def test_dump_rewind_rejected_without_guard(dump_setup):  # noqa: F811
    saved(dump_setup)
    dump_setup.cluster.psql("CREATE TABLE guard_flag ()", dump_setup.sandbox_database, dump_setup.sandbox_role)
    database = dump_setup.sandbox_state()

    result = dump_setup.run("rewind", "--yes", LIFECYCLE_GUARDS_CHECK_SQL=flag_check_sql(dump_setup))

    assert result.returncode == EXIT_GUARDS, result.stdout + result.stderr
    assert "flag_guard" in result.stdout + result.stderr
    assert dump_setup.sandbox_state() == database


def test_script_save_rejected_without_guard(setup):  # noqa: F811
    result = setup.run("checkpoint-save", LIFECYCLE_GUARDS_CHECK_SQL=flag_check_sql(setup))

    assert result.returncode == EXIT_GUARDS, result.stdout + result.stderr
    assert checkpoint_names(setup) == []


def test_bastion_uploads_guards_check(trusted, bastion_server, setup):  # noqa: F811
    settings = bastion_settings(
        trusted, bastion_server, pgpassfile=str(setup.cluster.pgpass_file), work_dir=str(setup.work_parent)
    )

    with pytest.raises(StepFailed) as failure:
        run_lifecycle_on_bastion(lifecycle_for(setup), settings, Run("checkpoint-save"), db_only=False,
                                 guards_check_sql=Path(flag_check_sql(setup)), arguments=["checkpoint-save"])

    assert failure.value.outcome.data["exit_code"] == EXIT_GUARDS
    assert "flag_guard" in failure.value.outcome.message
