"""ops/sandbox/sandbox-lifecycle.sh against a real PostgreSQL server and real folders.

Each test gets a prod database copied from a template that holds the fixture dump,
owned by role ``dolibarr``, and a sandbox database owned by its own role that holds
different, older content, so a test can distinguish "old" from "new".
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from checkpoint.lab.pgcluster import SUPERUSER
from tests.conftest import PROD_DOCUMENTS_TARBALL, PROD_DUMP, make_shared_tmpdir
from tests.lifecycle_helpers import (
    REFRESH_PHASES,
    SCRIPT,
    LifecycleSetup,
    connect,
    documents_snapshot,
    parse_phase_lines,
    signal_group,
    wait_until_restore_blocked,
    wait_until_restore_session_gone,
)

PROD_ROLE = "dolibarr"
SANDBOX_ROLE = "sandbox_lifecycle"
TEMPLATE_DATABASE = "lifecycle_prod_template"
GATE_LOCK_KEY = 727274
DATABASE_NUMBERS = itertools.count(1)

EXIT_USAGE = 2
EXIT_PREFLIGHT = 10
EXIT_VERIFY_DUMP = 12
EXIT_RESTORE = 13
EXIT_COUNTS_DIFFER = 14

OLD_SANDBOX_SQL = """
CREATE TABLE public.old_notes (id integer PRIMARY KEY, body text NOT NULL);
INSERT INTO public.old_notes VALUES (1, 'restored last month'), (2, 'agent test data');
CREATE TABLE public.llx_const (rowid integer PRIMARY KEY, name text, value text);
INSERT INTO public.llx_const VALUES (1, 'MAIN_APPLICATION_TITLE', 'Old sandbox');
CREATE SCHEMA scratch;
CREATE TABLE scratch.leftovers (id integer);
INSERT INTO scratch.leftovers VALUES (7);
CREATE FUNCTION public.old_helper() RETURNS integer LANGUAGE sql AS 'SELECT 1';
"""

# A CHECK constraint that takes a shared advisory lock while the restore loads
# the table's rows. A test holding the lock exclusively stops the restore there,
# in the middle of the data, which gives signal tests a known moment.
GATE_SQL = f"""
CREATE FUNCTION public.lifecycle_gate() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock_shared({GATE_LOCK_KEY});
  RETURN true;
END
$$;
CREATE TABLE public.zz_lifecycle_gate (id integer CHECK (public.lifecycle_gate()));
INSERT INTO public.zz_lifecycle_gate VALUES (1);
"""


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def lifecycle_server(pg_cluster, fixture_files):
    """Create the roles and a template database restored from the fixture dump, once."""
    pg_cluster.create_role(PROD_ROLE)
    pg_cluster.create_role(SANDBOX_ROLE)
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DATABASE}"')
    pg_cluster.create_database(TEMPLATE_DATABASE, PROD_ROLE)
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "-d", pg_cluster.uri(TEMPLATE_DATABASE, PROD_ROLE), str(PROD_DUMP)],
        check=True,
        capture_output=True,
        env={**os.environ, **pg_cluster.client_env()},
    )
    return pg_cluster


@pytest.fixture(scope="session")
def prod_documents_source(fixture_files):
    """Extract the fixture documents once, keeping their modes and mtimes."""
    folder = make_shared_tmpdir("lifecycle-documents-")
    with tarfile.open(PROD_DOCUMENTS_TARBALL) as archive:
        archive.extractall(folder, filter="tar")
    yield folder / "documents"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def setup(lifecycle_server, prod_documents_source):
    cluster = lifecycle_server
    number = next(DATABASE_NUMBERS)
    prod_database = f"prod_lifecycle_{number}"
    sandbox_database = f"sandbox_lifecycle_{number}"
    cluster.psql(f'CREATE DATABASE "{prod_database}" TEMPLATE "{TEMPLATE_DATABASE}" OWNER "{PROD_ROLE}"')
    cluster.create_database(sandbox_database, SANDBOX_ROLE)
    cluster.psql(OLD_SANDBOX_SQL, sandbox_database, SANDBOX_ROLE)

    folder = make_shared_tmpdir("lifecycle-test-")
    prod_documents = folder / "prod-documents"
    shutil.copytree(prod_documents_source, prod_documents, symlinks=True)
    sandbox_documents = make_old_sandbox_documents(folder / "sandbox-documents")
    work_parent = folder / "work"
    work_parent.mkdir()

    yield LifecycleSetup(
        cluster=cluster,
        prod_database=prod_database,
        sandbox_database=sandbox_database,
        prod_role=PROD_ROLE,
        sandbox_role=SANDBOX_ROLE,
        prod_documents=prod_documents,
        sandbox_documents=sandbox_documents,
        work_parent=work_parent,
    )

    for database in (prod_database, sandbox_database):
        cluster.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    shutil.rmtree(folder, ignore_errors=True)


def make_old_sandbox_documents(root: Path) -> Path:
    """Create a sandbox documents tree that differs from prod's in content, files and modes."""
    (root / "stale").mkdir(parents=True)
    (root / "stale" / "old-invoice.pdf").write_bytes(b"%PDF-1.4 old sandbox invoice")
    (root / "install.lock").write_text("old sandbox lock\n")
    (root / "install.lock").chmod(0o666)
    return root


def assert_prod_unchanged(setup: LifecycleSetup, before) -> None:
    assert setup.prod_state() == before, "prod's tables or objects changed"


def assert_work_folders_removed(setup: LifecycleSetup) -> None:
    assert list(setup.work_parent.iterdir()) == []


# -- refresh ------------------------------------------------------------------


def test_refresh_copies_prod_into_sandbox(setup):
    prod_before = setup.prod_state()

    result = setup.run("refresh", "--yes")

    assert result.returncode == 0, result.stderr
    sandbox = setup.sandbox_state()
    assert sandbox.tables == prod_before.tables
    assert [line.replace(PROD_ROLE, SANDBOX_ROLE) for line in prod_before.objects] == sandbox.objects
    assert documents_snapshot(setup.sandbox_documents) == documents_snapshot(setup.prod_documents)
    assert_prod_unchanged(setup, prod_before)
    assert_work_folders_removed(setup)


def test_refresh_logs_phases_in_order(setup):
    result = setup.run("refresh", "--yes")

    lines = parse_phase_lines(result.stdout)
    started = [phase for phase, text in lines if text == "start"]
    finished = [phase for phase, text in lines if text.startswith("done in ")]
    assert result.returncode == 0, result.stderr
    assert started == REFRESH_PHASES
    assert finished == REFRESH_PHASES
    assert ("verify", "287 tables, 4519 rows, all equal to prod (checked inside the restore transaction before COMMIT)") in lines


def test_second_refresh_also_succeeds(setup):
    prod_before = setup.prod_state()
    first = setup.run("refresh", "--yes")

    second = setup.run("refresh", "--yes")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert setup.sandbox_state().tables == prod_before.tables
    assert documents_snapshot(setup.sandbox_documents) == documents_snapshot(setup.prod_documents)
    assert_prod_unchanged(setup, prod_before)


def test_db_only_leaves_documents_untouched(setup):
    prod_before = setup.prod_state()
    documents_before = documents_snapshot(setup.sandbox_documents)

    result = setup.run("refresh", "--yes", "--db-only")

    assert result.returncode == 0, result.stderr
    assert ("documents", "skipped: --db-only") in parse_phase_lines(result.stdout)
    assert documents_snapshot(setup.sandbox_documents) == documents_before
    assert setup.sandbox_state().tables == prod_before.tables
    assert_prod_unchanged(setup, prod_before)


def test_db_only_needs_no_documents_variables(setup):
    result = setup.run("refresh", "--yes", "--db-only", PROD_DOCUMENTS_DIR=None, SANDBOX_DOCUMENTS_DIR=None)

    assert result.returncode == 0, result.stderr


def test_refresh_without_yes_changes_nothing(setup):
    prod_before = setup.prod_state()
    sandbox_before = setup.sandbox_state()
    documents_before = documents_snapshot(setup.sandbox_documents)

    result = setup.run("refresh")

    assert result.returncode == EXIT_USAGE
    assert setup.sandbox_database in result.stderr
    assert str(setup.sandbox_documents) in result.stderr
    assert "--yes" in result.stderr
    assert setup.sandbox_state() == sandbox_before
    assert documents_snapshot(setup.sandbox_documents) == documents_before
    assert_prod_unchanged(setup, prod_before)


def test_preflight_changes_nothing(setup):
    sandbox_before = setup.sandbox_state()
    documents_before = documents_snapshot(setup.sandbox_documents)

    result = setup.run("preflight")

    lines = parse_phase_lines(result.stdout)
    assert result.returncode == 0, result.stderr
    assert lines[0] == ("preflight", "start")
    assert lines[-1][1].startswith("done in ")
    assert {phase for phase, _ in lines} == {"preflight"}
    assert setup.sandbox_state() == sandbox_before
    assert documents_snapshot(setup.sandbox_documents) == documents_before


# -- sandbox is prod, bad input ------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same-uri", "other-host-text"])
def test_sandbox_reaching_prod_rejected_in_preflight(setup, host):
    prod_before = setup.prod_state()
    sandbox_uri = f"postgresql://{PROD_ROLE}@{host}:{setup.cluster.port}/{setup.prod_database}"

    result = setup.run("refresh", "--yes", SANDBOX_DB_URI=sandbox_uri)

    assert result.returncode == EXIT_PREFLIGHT
    assert "[preflight] failed: SANDBOX_DB_URI" in result.stderr
    assert setup.prod_database in result.stderr
    assert "[dump]" not in result.stdout
    assert_prod_unchanged(setup, prod_before)


def test_sandbox_with_prod_role_rejected(setup):
    setup.cluster.psql(f'ALTER DATABASE "{setup.sandbox_database}" OWNER TO "{PROD_ROLE}"')
    sandbox_uri = setup.cluster.uri(setup.sandbox_database, PROD_ROLE)

    result = setup.run("refresh", "--yes", SANDBOX_DB_URI=sandbox_uri)

    assert result.returncode == EXIT_PREFLIGHT
    assert "prod's role dolibarr" in result.stderr


@pytest.mark.parametrize("relation", ["same", "inside"])
def test_nested_documents_folders_rejected(setup, relation):
    documents_before = documents_snapshot(setup.prod_documents)
    sandbox = setup.prod_documents if relation == "same" else setup.prod_documents / "sandbox"

    result = setup.run("refresh", "--yes", SANDBOX_DOCUMENTS_DIR=str(sandbox))

    assert result.returncode == EXIT_PREFLIGHT
    assert "give the sandbox its own documents folder" in result.stderr
    assert documents_snapshot(setup.prod_documents) == documents_before


@pytest.mark.parametrize(
    "uri_template",
    [
        "postgresql://{user}:{password}@127.0.0.1:{port}/{database}",
        "postgresql://{user}@127.0.0.1:{port}/{database}?password={password}",
        "postgresql://{user}@127.0.0.1:{port}/{database}?sslmode=disable&p%61ssword={password}",
    ],
    ids=["userinfo", "query", "percent-encoded"],
)
def test_uri_with_password_rejected(setup, uri_template):
    password = "Secret-Pass-in-URI-93"
    uri = uri_template.format(user=SANDBOX_ROLE, password=password, port=setup.cluster.port, database=setup.sandbox_database)
    sandbox_before = setup.sandbox_state()

    result = setup.run("refresh", "--yes", SANDBOX_DB_URI=uri)

    assert result.returncode == EXIT_USAGE
    assert "SANDBOX_DB_URI contains a password" in result.stderr
    assert "PGPASSFILE" in result.stderr
    assert password not in result.stdout + result.stderr
    assert setup.sandbox_state() == sandbox_before


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"LIFECYCLE_TRANSPORT": None}, "LIFECYCLE_TRANSPORT is not set"),
        ({"LIFECYCLE_TRANSPORT": "ssh"}, "LIFECYCLE_TRANSPORT is invalid (ssh)"),
        ({"PROD_DB_URI": None}, "PROD_DB_URI is not set"),
        ({"SANDBOX_DB_URI": "host=127.0.0.1 dbname=x"}, "SANDBOX_DB_URI is not a postgresql:// URI"),
        ({"SANDBOX_DB_URI": "postgresql://u@127.0.0.1:5432"}, "SANDBOX_DB_URI names no database"),
        ({"PROD_DB_URI": "postgresql://u@127.0.0.1/p?options=-c%20x%3Dy"}, "PROD_DB_URI sets options="),
        ({"PROD_DB_URI": "postgresql://u@127.0.0.1/p?opt%69ons=-c%20x%3Dy"}, "PROD_DB_URI sets options="),
        ({"PROD_DOCUMENTS_DIR": None}, "PROD_DOCUMENTS_DIR is not set"),
        ({"LIFECYCLE_WORK_DIR": "/nonexistent/work"}, "LIFECYCLE_WORK_DIR is not a folder (/nonexistent/work)"),
        ({"LIFECYCLE_TIMEOUT_SECONDS": "soon"}, "LIFECYCLE_TIMEOUT_SECONDS is invalid (soon)"),
    ],
)
def test_invalid_environment_rejected(setup, overrides, expected):
    result = setup.run("refresh", "--yes", **overrides)

    assert result.returncode == EXIT_USAGE
    assert expected in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_unknown_argument_rejected(setup):
    result = setup.run("refresh", "--force")

    assert result.returncode == EXIT_USAGE
    assert "unknown argument '--force'" in result.stderr


def test_help_lists_exit_codes():
    result = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})

    assert result.returncode == 0
    for code in ("10", "11", "12", "13", "14", "15"):
        assert f"\n  {code} " in result.stdout


def test_prod_connections_are_read_only(setup):
    command = f'source "{SCRIPT}"; transport_psql_prod 30 test -c "CREATE TABLE public.written_by_lifecycle (id integer)"'

    result = subprocess.run(["bash", "-c", command], env=setup.env(), capture_output=True, text=True)

    assert result.returncode != 0
    assert "read-only transaction" in result.stderr
    assert "written_by_lifecycle" not in "\n".join(setup.prod_state().objects)


# -- failures leave the old sandbox --------------------------------------------


def truncated_copy(source: Path, folder: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target = folder / f"truncated-{fraction}.dump"
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def test_truncated_dump_rejected_before_restore(setup):
    prod_before = setup.prod_state()
    sandbox_before = setup.sandbox_state()
    dump = truncated_copy(PROD_DUMP, setup.work_parent.parent, 0.99)

    result = setup.run("refresh", "--yes", LIFECYCLE_TEST_DUMP_FILE=str(dump))

    assert result.returncode == EXIT_VERIFY_DUMP
    assert "[verify-dump] failed: pg_restore cannot read every block" in result.stderr
    assert "[restore]" not in result.stdout
    assert setup.sandbox_state() == sandbox_before
    assert_prod_unchanged(setup, prod_before)


def test_restore_cut_mid_stream_keeps_old_sandbox(setup):
    prod_before = setup.prod_state()
    sandbox_before = setup.sandbox_state()
    dump = truncated_copy(PROD_DUMP, setup.work_parent.parent, 0.99)
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True)
    assert listing.returncode == 0, "the truncated dump must keep its table of contents, so the cut falls in the data"

    result = setup.run("refresh", "--yes", LIFECYCLE_TEST_RESTORE_FILE=str(dump))

    assert result.returncode == EXIT_RESTORE
    assert "[restore] failed: pg_restore exited with status 1" in result.stderr
    assert "the sandbox keeps its previous content" in result.stderr
    assert setup.sandbox_state() == sandbox_before
    assert_prod_unchanged(setup, prod_before)


def test_row_count_mismatch_rolls_back(setup):
    with connect(setup.cluster, setup.prod_database) as connection:
        connection.execute("DELETE FROM public.llx_const WHERE rowid = (SELECT max(rowid) FROM public.llx_const)")
    sandbox_before = setup.sandbox_state()

    result = setup.run("refresh", "--yes", LIFECYCLE_TEST_DUMP_FILE=str(PROD_DUMP))

    assert result.returncode == EXIT_COUNTS_DIFFER
    assert "public.llx_const prod 288 sandbox 289" in result.stderr
    assert setup.sandbox_state() == sandbox_before


def test_object_of_another_owner_aborts_restore(setup):
    setup.cluster.psql("CREATE TABLE public.owned_by_superuser (id integer)", setup.sandbox_database)
    sandbox_before = setup.sandbox_state()

    result = setup.run("refresh", "--yes")

    assert result.returncode == EXIT_RESTORE
    assert f"table public.owned_by_superuser (owner {SUPERUSER})" in result.stderr
    assert "nothing was changed" in result.stderr
    assert setup.sandbox_state() == sandbox_before


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"],
)
def test_signal_during_restore_keeps_old_sandbox(setup, signum, returncode):
    setup.cluster.psql(GATE_SQL, setup.prod_database, PROD_ROLE)
    prod_before = setup.prod_state()
    sandbox_before = setup.sandbox_state()

    # Advisory locks belong to one database, so the gate is taken in the sandbox's.
    with connect(setup.cluster, setup.sandbox_database) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))
        process = setup.start("refresh", "--yes")
        try:
            wait_until_restore_blocked(setup, process)
            signal_group(process, signum)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                signal_group(process, signal.SIGKILL)
                process.communicate()
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_KEY,))

    wait_until_restore_session_gone(setup)
    assert process.returncode == returncode
    if signum != signal.SIGKILL:
        assert f"[restore] failed: interrupted by {signum.name}" in stderr
        assert_work_folders_removed(setup)
    assert "[restore] committed" not in stdout
    assert setup.sandbox_state() == sandbox_before
    assert_prod_unchanged(setup, prod_before)


def test_interrupt_during_documents_leaves_marker(setup, tmp_path):
    """A signal during the documents sync reports that the database is new and leaves a marker for status."""
    blocking_bin = tmp_path / "bin"
    blocking_bin.mkdir()
    started = tmp_path / "rsync-started"
    (blocking_bin / "rsync").write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 60\n")
    (blocking_bin / "rsync").chmod(0o755)
    process = setup.start("refresh", "--yes", PATH=f"{blocking_bin}:{os.environ['PATH']}")
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)

    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    marker = setup.sandbox_documents / ".sandbox-lifecycle-sync-incomplete"

    assert started.exists()
    assert process.returncode == 143
    assert "the sandbox database is already the new one" in stderr
    assert marker.exists()
