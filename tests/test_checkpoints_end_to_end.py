"""Save and rewind on the lab seeded with the real Dolibarr 20.0.2 fixture, through the CLI.

``invoke reset --yes`` takes the first checkpoint. The test then writes rows and
files as a rehearsing agent would, and checks that ``invoke rewind --yes`` brings back
the database and the documents of the checkpoint with the agent still armed.
"""

from __future__ import annotations

import json
import re

import pytest

from checkpoint.checkpoints import key_fingerprint
from checkpoint.lab.lab import SANDBOX_DATABASE, SANDBOX_OWNER
from tests.cli_helpers import fixture_lab, run_invoke
from tests.db_helpers import table_checksums
from tests.lifecycle_helpers import documents_snapshot

AGENT = "ai_agent_sandbox"
LOGIN_COLUMNS = {"llx_user": ["datelastlogin", "datepreviouslogin", "iplastlogin", "ippreviouslogin", "tms"]}


@pytest.fixture(scope="module")
def lab(fixture_files):
    with fixture_lab(fixture_files, "checkpoint-rewind") as (lab, config, config_dir):

        def invoke(*args: str):
            return run_invoke(list(args), config, config_dir)

        reset = invoke("reset", "--yes")
        assert reset.returncode == 0, reset.stdout + reset.stderr
        yield lab, invoke, reset


@pytest.fixture(scope="module")
def rehearsal(lab):
    """Record the checkpoint's state, then change the sandbox as an agent would."""
    lab_paths, invoke, _ = lab
    cluster = lab_paths.cluster
    before = {
        "tables": table_checksums(cluster, SANDBOX_DATABASE, ignore_columns=LOGIN_COLUMNS),
        "documents": documents_snapshot(lab_paths.sandbox_documents),
        "users": cluster.psql("SELECT rowid, login, api_key FROM llx_user ORDER BY rowid", SANDBOX_DATABASE),
    }
    cluster.psql(
        "INSERT INTO llx_societe (nom, entity, datec) VALUES ('Rehearsal Customer', 1, now());"
        "UPDATE llx_facture SET note_private = 'touched by the agent';",
        SANDBOX_DATABASE, SANDBOX_OWNER,
    )
    (lab_paths.sandbox_documents / "rehearsal.txt").write_text("written by the agent\n")
    status = invoke("status", "--json")
    rewind = invoke("rewind", "--yes")
    return before, status, rewind


def test_reset_saves_checkpoint_with_metadata(lab):
    lab_paths, invoke, _ = lab
    key = (lab_paths.state_dir / "agent" / "api-key").read_text().strip()

    listed = invoke("checkpoint.list", "--json")
    checkpoints = json.loads(listed.stdout)["checkpoints"]

    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert len(checkpoints) == 1
    assert checkpoints[0]["method"] == "template"
    assert checkpoints[0]["agent_login"] == AGENT
    assert checkpoints[0]["key_fingerprint"] == key_fingerprint(key)
    assert re.fullmatch(r"[0-9a-f]{64}", checkpoints[0]["prod_dump_sha256"])


def test_status_reports_changes_since_checkpoint(rehearsal):
    _, status, _ = rehearsal
    checkpoint = json.loads(status.stdout)["checkpoint"]

    assert checkpoint["database_changed"] == "yes"
    assert checkpoint["documents_changed"] == "yes"


def test_rewind_exits_zero(rehearsal):
    _, _, rewind = rehearsal

    assert rewind.returncode == 0, rewind.stdout + rewind.stderr


def test_rewind_removes_agent_rows(lab, rehearsal):
    before, _, _ = rehearsal
    cluster = lab[0].cluster

    after = table_checksums(cluster, SANDBOX_DATABASE, ignore_columns=LOGIN_COLUMNS)
    customers = cluster.psql("SELECT count(*) FROM llx_societe WHERE nom = 'Rehearsal Customer'", SANDBOX_DATABASE)

    assert customers.strip() == "0"
    assert after == before["tables"]


def test_rewind_restores_documents(lab, rehearsal):
    before, _, _ = rehearsal

    assert documents_snapshot(lab[0].sandbox_documents) == before["documents"]


def test_rewind_keeps_agent_user_rows(lab, rehearsal):
    before, _, _ = rehearsal
    users = lab[0].cluster.psql("SELECT rowid, login, api_key FROM llx_user ORDER BY rowid", SANDBOX_DATABASE)

    assert users == before["users"]


def test_agent_armed_after_rewind(lab, rehearsal):
    result = lab[1]("status", "--json")
    document = json.loads(result.stdout)

    assert result.returncode == 0, result.stdout + result.stderr
    assert document["armed"] is True
    assert document["checkpoint"]["database_changed"] == "no"
    assert document["checkpoint"]["documents_changed"] == "no"


def test_rewind_verifies_key_with_users_info(rehearsal):
    _, _, rewind = rehearsal

    assert "verify_api_key" in rewind.stdout


def test_no_secret_in_rewind_output(lab, rehearsal):
    _, _, rewind = rehearsal
    key = (lab[0].state_dir / "agent" / "api-key").read_text().strip()

    assert key not in rewind.stdout + rewind.stderr


def test_rewind_without_yes_changes_nothing(lab, rehearsal):
    lab_paths, invoke, _ = lab
    marker = lab_paths.sandbox_documents / "after-rewind.txt"
    marker.write_text("kept\n")

    result = invoke("rewind")

    assert result.returncode != 0
    assert "--yes" in result.stderr
    assert marker.exists()
    marker.unlink()


# Last in the file: the refresh disarms the agent for the rest of the module.
def test_save_rejects_disarmed_agent(lab, rehearsal):
    lab_paths, invoke, _ = lab
    refresh = invoke("refresh", "--yes")
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    before = checkpoint_names(invoke)

    result = invoke("checkpoint.save")

    assert result.returncode != 0
    assert "verify_api_key" in result.stdout
    assert "run invoke provision" in result.stdout
    assert checkpoint_names(invoke) == before


def checkpoint_names(invoke) -> list[str]:
    listed = json.loads(invoke("checkpoint.list", "--json").stdout)
    return [item["checkpoint"] for item in listed["checkpoints"]]


def test_list_reports_age_as_number(lab):
    _, invoke, _ = lab

    listed = json.loads(invoke("checkpoint.list", "--json").stdout)

    assert all(isinstance(item["age_seconds"], int) for item in listed["checkpoints"])
    assert listed["checkpoints"]


def test_drop_without_name_one_line(lab):
    _, invoke, _ = lab

    result = invoke("checkpoint.drop")

    assert result.returncode == 2
    assert "run invoke checkpoint.list" in result.stderr
    assert "Traceback" not in result.stderr
