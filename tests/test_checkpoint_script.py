"""Checkpoint commands of ops/sandbox/sandbox-lifecycle.sh on a real PostgreSQL server.

Each test gets a small prod database and a sandbox database owned by its own role,
with CREATEDB (template copies) unless the test is about the dump path.
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
from pathlib import Path

import psycopg
import pytest

from checkpoint.lab.pgcluster import wait_for
from tests.conftest import make_shared_tmpdir
from tests.lifecycle_helpers import LifecycleSetup, connect, documents_snapshot, drop_test_databases, signal_group

PROD_ROLE = "checkpoint_prod"
SANDBOX_ROLE = "checkpoint_sandbox"
DUMP_ROLE = "checkpoint_sandbox_nocreatedb"
GATE_LOCK_KEY = 727275
NUMBERS = itertools.count(1)
REWIND_APPLICATION = "sandbox-lifecycle rewind"

EXIT_USAGE = 2
EXIT_NO_CHECKPOINT = 20
EXIT_REFUSED = 21
EXIT_REWIND = 23
EXIT_NOT_FOUND = 24

SANDBOX_SQL = """
CREATE TABLE public.llx_societe (rowid serial PRIMARY KEY, nom text NOT NULL);
INSERT INTO public.llx_societe (nom) SELECT 'customer ' || n FROM generate_series(1, 200) n;
"""


@pytest.fixture(scope="session")
def checkpoint_server(pg_cluster):
    pg_cluster.create_role(PROD_ROLE)
    pg_cluster.create_role(SANDBOX_ROLE, createdb=True)
    pg_cluster.create_role(DUMP_ROLE)
    return pg_cluster


def make_setup(cluster, sandbox_role: str) -> LifecycleSetup:
    number = next(NUMBERS)
    prod_database, sandbox_database = f"checkpoint_prod_{number}", f"checkpoint_sandbox_{number}"
    cluster.create_database(prod_database, PROD_ROLE)
    cluster.create_database(sandbox_database, sandbox_role)
    cluster.psql(SANDBOX_SQL, prod_database, PROD_ROLE)
    cluster.psql(SANDBOX_SQL, sandbox_database, sandbox_role)

    folder = make_shared_tmpdir("checkpoint-test-")
    for side in ("prod-documents", "sandbox-documents"):
        (folder / side / "facture" / "FA0001").mkdir(parents=True)
        (folder / side / "facture" / "FA0001" / "FA0001.pdf").write_bytes(b"%PDF-1.4 invoice")
        (folder / side / "install.lock").write_text("lock\n")
    (folder / "work").mkdir()
    return LifecycleSetup(
        cluster=cluster,
        prod_database=prod_database,
        sandbox_database=sandbox_database,
        prod_role=PROD_ROLE,
        sandbox_role=sandbox_role,
        prod_documents=folder / "prod-documents",
        sandbox_documents=folder / "sandbox-documents",
        work_parent=folder / "work",
        extra_env={"LIFECYCLE_CHECKPOINT_DIR": str(folder / "checkpoints")},
    )


def teardown_setup(setup: LifecycleSetup) -> None:
    drop_test_databases(setup.cluster, setup.sandbox_database, setup.prod_database)
    shutil.rmtree(setup.sandbox_documents.parent, ignore_errors=True)


@pytest.fixture
def setup(checkpoint_server):
    setup = make_setup(checkpoint_server, SANDBOX_ROLE)
    yield setup
    teardown_setup(setup)


@pytest.fixture
def dump_setup(checkpoint_server):
    setup = make_setup(checkpoint_server, DUMP_ROLE)
    yield setup
    teardown_setup(setup)


def rehearse(setup: LifecycleSetup) -> None:
    """Change the sandbox as an agent would: rows and documents."""
    setup.cluster.psql(
        "INSERT INTO llx_societe (nom) VALUES ('rehearsal'); DELETE FROM llx_societe WHERE rowid < 10;",
        setup.sandbox_database, setup.sandbox_role,
    )
    (setup.sandbox_documents / "rehearsal.txt").write_text("agent\n")
    (setup.sandbox_documents / "install.lock").unlink()
    (setup.sandbox_documents / "install.lock").mkdir()
    shutil.rmtree(setup.sandbox_documents / "facture" / "FA0001")
    (setup.sandbox_documents / "societe" / "1").mkdir(parents=True)
    (setup.sandbox_documents / "societe" / "1" / "logo.png").write_bytes(b"png")


def rehearse_rows(setup: LifecycleSetup) -> None:
    """Change only the sandbox's rows."""
    setup.cluster.psql("DELETE FROM llx_societe WHERE rowid < 10", setup.sandbox_database, setup.sandbox_role)


def rewind_clones(setup: LifecycleSetup) -> list[str]:
    return setup.cluster.psql(
        f"SELECT datname FROM pg_database WHERE datname = '{setup.sandbox_database}__rewind'"
    ).split()


def checkpoint_names(setup: LifecycleSetup) -> list[str]:
    result = setup.run("checkpoint-list")
    assert result.returncode == 0, result.stderr
    return re.findall(r"checkpoint=(\S+)", result.stdout)


def saved(setup: LifecycleSetup) -> None:
    result = setup.run("checkpoint-save")
    assert result.returncode == 0, result.stdout + result.stderr


# -- save and rewind --------------------------------------------------------------


def test_rewind_restores_rows_and_documents(setup):
    saved(setup)
    database, documents = setup.sandbox_state(), documents_snapshot(setup.sandbox_documents)
    rehearse(setup)

    result = setup.run("rewind", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert setup.sandbox_state() == database
    assert documents_snapshot(setup.sandbox_documents) == documents


def test_rewind_without_yes_changes_nothing(setup):
    saved(setup)
    rehearse(setup)
    database = setup.sandbox_state()

    result = setup.run("rewind")

    assert result.returncode == EXIT_USAGE
    assert "--yes" in result.stderr
    assert setup.sandbox_state() == database


def test_rewind_without_checkpoint_fails_clearly(setup):
    result = setup.run("rewind", "--yes")

    assert result.returncode == EXIT_NO_CHECKPOINT
    assert "no checkpoint in" in result.stderr
    assert "checkpoint-save" in result.stderr


def test_status_reports_changes(setup):
    saved(setup)
    unchanged = setup.run("checkpoint-status")
    rehearse(setup)

    def reports_change() -> bool:
        # pg_stat_database counters reach the view within about a second.
        return "database_changed=yes" in setup.run("checkpoint-status").stdout

    assert "database_changed=no documents_changed=no" in unchanged.stdout
    wait_for(reports_change, timeout=30, what="checkpoint-status to report the rehearsal's rows")
    assert "documents_changed=yes" in setup.run("checkpoint-status").stdout


# -- refusals ---------------------------------------------------------------------


def test_checkpoint_of_other_sandbox_rejected(setup, checkpoint_server):
    saved(setup)
    other = make_setup(checkpoint_server, SANDBOX_ROLE)
    try:
        database = other.sandbox_state()
        result = other.run("rewind", "--yes", LIFECYCLE_CHECKPOINT_DIR=setup.extra_env["LIFECYCLE_CHECKPOINT_DIR"])

        assert result.returncode == EXIT_REFUSED
        assert f"was taken from database {setup.sandbox_database}" in result.stderr
        assert other.sandbox_state() == database
    finally:
        teardown_setup(other)


def test_checkpoint_of_other_schema_rejected(setup):
    saved(setup)
    setup.cluster.psql("ALTER TABLE llx_societe ADD COLUMN code_client text", setup.sandbox_database, setup.sandbox_role)
    database = setup.sandbox_state()

    result = setup.run("rewind", "--yes")

    assert result.returncode == EXIT_REFUSED
    assert "another schema" in result.stderr
    assert setup.sandbox_state() == database


def test_rewind_removes_table_added_by_rehearsal(setup):
    assert setup.run("refresh", "--yes").returncode == 0
    saved(setup)
    database = setup.sandbox_state()
    setup.cluster.psql("CREATE TABLE llx_rehearsal_module (rowid integer)", setup.sandbox_database, setup.sandbox_role)

    result = setup.run("rewind", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert setup.sandbox_state() == database


def test_checkpoint_before_prod_schema_change_rejected(setup):
    assert setup.run("refresh", "--yes").returncode == 0
    saved(setup)
    setup.cluster.psql("ALTER TABLE llx_societe ADD COLUMN code_client text", setup.prod_database, setup.prod_role)
    assert setup.run("refresh", "--yes").returncode == 0
    database = setup.sandbox_state()

    result = setup.run("rewind", "--yes")

    assert result.returncode == EXIT_REFUSED, result.stdout + result.stderr
    assert "another schema than the sandbox's last refresh" in result.stderr
    assert setup.sandbox_state() == database


def test_documents_rewritten_through_hard_link_rejected(setup):
    saved(setup)
    rehearse_rows(setup)
    # Writing in place keeps the inode that the checkpoint shares.
    with open(setup.sandbox_documents / "install.lock", "r+") as handle:
        handle.write("rewritten in place\n")
    database, documents = setup.sandbox_state(), documents_snapshot(setup.sandbox_documents)

    result = setup.run("rewind", "--yes")

    assert result.returncode == EXIT_REFUSED
    assert "rewritten in place" in result.stderr
    assert setup.sandbox_state() == database
    assert documents_snapshot(setup.sandbox_documents) == documents
    assert rewind_clones(setup) == []


def test_documents_removed_from_checkpoint_rejected(setup):
    saved(setup)
    (name,) = checkpoint_names(setup)
    (setup.sandbox_documents / "facture" / "FA0001" / "FA0001.pdf").unlink()
    (Path(setup.extra_env["LIFECYCLE_CHECKPOINT_DIR"]) / name / "documents" / "facture" / "FA0001" / "FA0001.pdf").unlink()

    result = setup.run("rewind", "--yes")

    assert result.returncode == EXIT_REFUSED
    assert "changed since it was taken" in result.stderr


def test_unchanged_documents_not_copied(setup):
    saved(setup)
    rehearse_rows(setup)

    result = setup.run("rewind", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "documents: 0 entries copied or updated, 0 stale entries checked" in result.stdout


# -- SIGKILL at the commit point ------------------------------------------------------


def rewind_waits_on_gate(setup: LifecycleSetup) -> bool:
    with connect(setup.cluster, "postgres") as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            (REWIND_APPLICATION,),
        ).fetchone()[0] == 1


def rewind_sessions(setup: LifecycleSetup) -> int:
    with connect(setup.cluster, "postgres") as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (REWIND_APPLICATION,)
        ).fetchone()[0]


def test_sigkill_during_rename_keeps_old_sandbox(setup):
    saved(setup)
    checkpoint_state = setup.sandbox_state()
    rehearse(setup)
    rehearsal_state = setup.sandbox_state()

    # The gate sits between the two renames; advisory locks belong to one database,
    # and the rename transaction runs on the maintenance database postgres.
    with connect(setup.cluster, "postgres") as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))
        process = setup.start("rewind", "--yes", LIFECYCLE_TEST_REWIND_GATE_LOCK=str(GATE_LOCK_KEY))
        wait_for(lambda: rewind_waits_on_gate(setup), timeout=120, what="the rename transaction to wait on the gate")
        signal_group(process, signal.SIGKILL)
        process.wait()
        wait_for(lambda: rewind_sessions(setup) == 0, timeout=60, what="the rename session to end")
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_KEY,))

    assert setup.sandbox_state() == rehearsal_state

    again = setup.run("rewind", "--yes")

    assert again.returncode == 0, again.stdout + again.stderr
    assert setup.sandbox_state() == checkpoint_state
    leftovers = setup.cluster.psql(
        f"SELECT datname FROM pg_database WHERE datname LIKE '{setup.sandbox_database}\\_\\_%' ORDER BY 1"
    ).split()
    assert all("__ckpt_" in name for name in leftovers), leftovers


def test_sigkill_after_commit_finished_later(setup):
    saved(setup)
    checkpoint_state = setup.sandbox_state()
    checkpoint_documents = documents_snapshot(setup.sandbox_documents)
    rehearse(setup)
    rehearsal_documents = documents_snapshot(setup.sandbox_documents)

    with connect(setup.cluster, "postgres") as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))
        process = setup.start("rewind", "--yes", LIFECYCLE_TEST_DOCUMENTS_GATE_LOCK=str(GATE_LOCK_KEY))
        wait_for(lambda: gate_waiters(setup) == 1, timeout=120, what="the rewind to wait after its COMMIT")
        signal_group(process, signal.SIGKILL)
        process.wait()
        wait_for(lambda: gate_waiters(setup) == 0, timeout=60, what="the gate session to end")
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_KEY,))

    assert setup.sandbox_state() == checkpoint_state
    assert documents_snapshot(setup.sandbox_documents) == rehearsal_documents
    assert "database_changed=interrupted-rewind" in setup.run("checkpoint-status").stdout

    again = setup.run("checkpoint-save")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "finishing its documents" in again.stdout
    assert documents_snapshot(setup.sandbox_documents) == checkpoint_documents


def test_uncommitted_journal_not_reported(setup):
    saved(setup)
    store = Path(setup.extra_env["LIFECYCLE_CHECKPOINT_DIR"])
    (name,) = checkpoint_names(setup)
    (store / "rewind.journal").write_text(f"0123456789abcdef {name}\n")

    result = setup.run("checkpoint-status")

    assert result.returncode == 0, result.stderr
    assert "database_changed=no" in result.stdout


def test_sigterm_after_commit_names_rewind(setup):
    saved(setup)
    rehearse(setup)

    with connect(setup.cluster, "postgres") as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))
        process = setup.start("rewind", "--yes", LIFECYCLE_TEST_DOCUMENTS_GATE_LOCK=str(GATE_LOCK_KEY))
        wait_for(lambda: gate_waiters(setup) == 1, timeout=120, what="the rewind to wait after its COMMIT")
        signal_group(process, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_KEY,))

    assert process.returncode == 143
    assert "documents may be only partly restored; run rewind --yes to finish" in stderr
    assert "rerun refresh" not in stderr


def gate_waiters(setup: LifecycleSetup) -> int:
    with connect(setup.cluster, "postgres") as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sandbox-lifecycle%%'"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        ).fetchone()[0]


def test_other_role_session_fails_rewind_cleanly(setup):
    saved(setup)
    rehearse_rows(setup)
    database = setup.sandbox_state()

    # The prod role may connect to the sandbox database but is not the sandbox role, so
    # the rewind may not end its session and the rename cannot run.
    other = psycopg.connect(setup.cluster.uri(setup.sandbox_database, PROD_ROLE),
                            passfile=str(setup.cluster.pgpass_file), autocommit=True)
    try:
        result = setup.run("rewind", "--yes")
    finally:
        other.close()

    assert result.returncode == EXIT_REWIND, result.stdout + result.stderr
    assert "stop the clients that connect" in result.stderr
    assert "must be a" not in result.stderr
    assert setup.sandbox_state() == database
    assert rewind_clones(setup) == []
    assert "database_changed=yes" in setup.run("checkpoint-status").stdout


@pytest.mark.parametrize("where", ["prod", "inside-prod", "sandbox", "inside-sandbox"])
def test_store_overlapping_documents_rejected(setup, where):
    prod_before = documents_snapshot(setup.prod_documents)
    store = {
        "prod": setup.prod_documents,
        "inside-prod": setup.prod_documents / "checkpoints",
        "sandbox": setup.sandbox_documents,
        "inside-sandbox": setup.sandbox_documents / "checkpoints",
    }[where]

    result = setup.run("checkpoint-save", LIFECYCLE_CHECKPOINT_DIR=str(store))

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "LIFECYCLE_CHECKPOINT_DIR (setting checkpoints.dir) is invalid" in result.stderr
    assert documents_snapshot(setup.prod_documents) == prod_before
    assert not (setup.sandbox_documents / "checkpoints").exists()


def test_store_that_is_file_rejected(setup):
    store = setup.sandbox_documents.parent / "store-file"
    store.write_text("not a folder\n")

    result = setup.run("checkpoint-save", LIFECYCLE_CHECKPOINT_DIR=str(store))

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "it exists and is not a folder" in result.stderr


def test_rewind_of_sandbox_inside_prod_rejected(setup):
    saved(setup)
    prod_before = documents_snapshot(setup.prod_documents)

    result = setup.run("rewind", "--yes", SANDBOX_DOCUMENTS_DIR=str(setup.prod_documents / "facture"))

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "give the sandbox its own documents folder" in result.stderr
    assert documents_snapshot(setup.prod_documents) == prod_before


def test_checkpoint_of_other_key_rejected(setup):
    result = setup.run("checkpoint-save", CHECKPOINT_KEY_FINGERPRINT="sha256:aaaaaaaaaaaaaaaa")
    assert result.returncode == 0, result.stdout + result.stderr
    rehearse_rows(setup)
    database = setup.sandbox_state()

    rewind = setup.run("rewind", "--yes", CHECKPOINT_KEY_FINGERPRINT="sha256:bbbbbbbbbbbbbbbb")

    assert rewind.returncode == EXIT_REFUSED, rewind.stdout + rewind.stderr
    assert "saved with the agent key sha256:aaaaaaaaaaaaaaaa" in rewind.stderr
    assert setup.sandbox_state() == database


@pytest.mark.parametrize(
    "damage, problem",
    [("database=", "it has no database"), ("taken_epoch=", "taken_epoch is not a number"),
     ("method=", "method is neither template nor dump")],
)
def test_damaged_meta_rejected(setup, damage, problem):
    saved(setup)
    (name,) = checkpoint_names(setup)
    meta = Path(setup.extra_env["LIFECYCLE_CHECKPOINT_DIR"]) / name / "meta"
    lines = [line for line in meta.read_text().splitlines() if not line.startswith(damage)]
    meta.write_text("\n".join(lines + ([f"{damage}abc"] if damage != "database=" else [])) + "\n")

    result = setup.run("rewind", "--yes")

    assert result.returncode == EXIT_REFUSED, result.stdout + result.stderr
    assert problem in result.stderr
    assert f"checkpoint-drop {name}" in result.stderr
    assert "unbound variable" not in result.stderr


@pytest.mark.parametrize("name", ["new\nline.txt", "tab\there.txt"])
def test_name_with_tab_or_newline_rejected(setup, name):
    saved(setup)
    rehearse_rows(setup)
    database = setup.sandbox_state()
    (setup.sandbox_documents / name).write_text("odd\n")

    rewind = setup.run("rewind", "--yes")
    save = setup.run("checkpoint-save")

    assert rewind.returncode == 23, rewind.stdout + rewind.stderr
    assert "has a tab or a newline in its name" in rewind.stderr
    assert setup.sandbox_state() == database
    assert rewind_clones(setup) == []
    assert save.returncode == 22, save.stdout + save.stderr
    assert "no checkpoint was created" in save.stderr
    assert len(checkpoint_names(setup)) == 1


# -- the dump path without CREATEDB ---------------------------------------------------


def test_dump_path_says_slower(dump_setup):
    result = dump_setup.run("checkpoint-save")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the slower path" in result.stdout
    assert "method=dump" in dump_setup.run("checkpoint-list").stdout


def test_dump_file_is_private(dump_setup):
    saved(dump_setup)
    (name,) = checkpoint_names(dump_setup)

    dump = Path(dump_setup.extra_env["LIFECYCLE_CHECKPOINT_DIR"]) / name / "database.dump"

    assert dump.stat().st_mode & 0o777 == 0o600


def test_dump_path_rewind_restores_rows(dump_setup):
    saved(dump_setup)
    database = dump_setup.sandbox_state()
    rehearse(dump_setup)

    result = dump_setup.run("rewind", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the slower path" in result.stdout
    assert dump_setup.sandbox_state() == database


# -- list, drop and retention -----------------------------------------------------------


def test_drop_removes_checkpoint_and_database(setup):
    saved(setup)
    saved(setup)
    first, second = checkpoint_names(setup)

    result = setup.run("checkpoint-drop", first)

    assert result.returncode == 0, result.stderr
    assert checkpoint_names(setup) == [second]
    assert setup.cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{setup.sandbox_database}__ckpt_{first}'").strip() == "0"


def test_drop_unknown_checkpoint_fails(setup):
    result = setup.run("checkpoint-drop", "20990101T000000Z")

    assert result.returncode == EXIT_NOT_FOUND
    assert "not found" in result.stderr


def test_retention_keeps_configured_count(setup):
    for _ in range(3):
        result = setup.run("checkpoint-save", LIFECYCLE_CHECKPOINT_KEEP="2")
        assert result.returncode == 0, result.stderr
    names = checkpoint_names(setup)

    assert len(names) == 2
    databases = setup.cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{setup.sandbox_database}\\_\\_ckpt\\_%'")
    assert databases.strip() == "2"
