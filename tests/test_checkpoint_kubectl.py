"""Checkpoint commands of ops/sandbox/sandbox-lifecycle.sh with the kubectl transport.

The real kubectl talks to the stand-in API server, whose ``exec`` runs psql and pg_dump
against the session's PostgreSQL server and the store's sh scripts in a local folder
that plays the sandbox Dolibarr pod's documents volume. The sandbox contains the real
Dolibarr 20.0.2 fixture, restored as the sandbox role.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from checkpoint.files import write_private
from checkpoint.lab.pgcluster import wait_for
from checkpoint.lab.standin.app import StandinServer
from tests.cli_helpers import assert_one_line_error, run_invoke
from tests.conftest import FIXTURE_API_KEYS, FIXTURE_INSTANCE_ID, PROD_DUMP, make_shared_tmpdir
from tests.db_helpers import table_checksums
from tests.kube_helpers import KUBECTL, NAMESPACE, KubeSetup, add_application, add_side, write_lease
from tests.lifecycle_helpers import connect, documents_snapshot, drop_test_databases
from tests.support.kube_api import ExecCall, KubeApiServer
from tests.test_lifecycle_kubectl import (  # noqa: F401  (pytest fixtures)
    PROD_ROLE,
    TEMPLATE_DATABASE,
    invoke_config,
    kube_documents_source,
    kube_pg,
)

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")

SANDBOX_ROLE = "kube_ckpt_sandbox"
DUMP_ROLE = "kube_ckpt_nocreatedb"
GATE_LOCK_KEY = 727276
NUMBERS = itertools.count(1)
REWIND_APPLICATION = "sandbox-lifecycle rewind"

EXIT_USAGE = 2
EXIT_PREFLIGHT = 10
EXIT_REFUSED = 21
EXIT_REWIND = 23


# -- fixtures -------------------------------------------------------------------


def sandbox_template(role: str) -> str:
    return f"kube_ckpt_template_{role}"


@pytest.fixture(scope="session")
def checkpoint_pg(kube_pg):  # noqa: F811
    """Two sandbox roles, with and without CREATEDB, each with the fixture restored as that role."""
    kube_pg.create_role(SANDBOX_ROLE, createdb=True)
    kube_pg.create_role(DUMP_ROLE)
    for role in (SANDBOX_ROLE, DUMP_ROLE):
        template = sandbox_template(role)
        kube_pg.psql(f'DROP DATABASE IF EXISTS "{template}"')
        kube_pg.create_database(template, role)
        subprocess.run(
            ["pg_restore", "--no-owner", "--no-privileges", "-d", kube_pg.uri(template, role), str(PROD_DUMP)],
            check=True, capture_output=True, env={**os.environ, **kube_pg.client_env()},
        )
    return kube_pg


def make_setup(pg, role: str, documents_source: Path) -> KubeSetup:
    number = next(NUMBERS)
    prod_database, sandbox_database = f"kube_ckpt_prod_{number}", f"kube_ckpt_sandbox_{number}"
    pg.psql(f'CREATE DATABASE "{prod_database}" TEMPLATE "{TEMPLATE_DATABASE}" OWNER "{PROD_ROLE}"')
    pg.psql(f'CREATE DATABASE "{sandbox_database}" TEMPLATE "{sandbox_template(role)}" OWNER "{role}"')

    folder = make_shared_tmpdir("kube-ckpt-")
    prod_documents = folder / "prod-documents"
    shutil.copytree(documents_source, prod_documents, symlinks=True)
    sandbox_documents = folder / "sandbox-documents"
    shutil.copytree(documents_source, sandbox_documents, symlinks=True)
    (folder / "work").mkdir()
    (folder / "home").mkdir()

    server = KubeApiServer()
    server.start()
    prod, sandbox = server.add_cluster("prod"), server.add_cluster("sandbox")
    add_side(prod, pg, 1)
    add_side(sandbox, pg, 2)
    add_application(sandbox)
    return KubeSetup(server, prod, sandbox, pg, prod_database, sandbox_database, PROD_ROLE, role,
                     prod_documents, sandbox_documents, folder / "home",
                     server.write_kubeconfig(folder / "kubeconfig", ["sandbox", "prod"]), folder / "work")


def teardown_setup(setup: KubeSetup) -> None:
    setup.server.stop()
    drop_test_databases(setup.pg, setup.sandbox_database, setup.prod_database)
    shutil.rmtree(setup.sandbox_documents.parent, ignore_errors=True)


@pytest.fixture
def kube_ckpt(checkpoint_pg, kube_documents_source):  # noqa: F811
    setup = make_setup(checkpoint_pg, SANDBOX_ROLE, kube_documents_source)
    yield setup
    teardown_setup(setup)


@pytest.fixture
def kube_dump(checkpoint_pg, kube_documents_source):  # noqa: F811
    setup = make_setup(checkpoint_pg, DUMP_ROLE, kube_documents_source)
    yield setup
    teardown_setup(setup)


# -- helpers --------------------------------------------------------------------


def store(setup: KubeSetup) -> Path:
    """The default store: beside the documents folder inside the sandbox's Dolibarr pod."""
    return Path(f"{setup.sandbox_documents}.checkpoints")


def checksums(setup: KubeSetup) -> dict:
    return table_checksums(setup.pg, setup.sandbox_database)


def saved(setup: KubeSetup, **overrides: str) -> str:
    result = setup.run("checkpoint-save", **overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    return re.findall(r"saved checkpoint (\S+)", result.stdout)[0]


def listed(setup: KubeSetup) -> list[str]:
    result = setup.run("checkpoint-list")
    assert result.returncode == 0, result.stderr
    return re.findall(r"checkpoint=(\S+) taken_at=", result.stdout)


def rehearse(setup: KubeSetup) -> None:
    """Change the sandbox as an agent would: rows, and documents added, removed and replaced."""
    setup.pg.psql(
        "INSERT INTO llx_c_country (rowid, code, label, active) VALUES (9901, 'QQ', 'Rehearsal', 1);"
        "DELETE FROM llx_const WHERE name = 'MAIN_INFO_SOCIETE_NOTE';"
        "UPDATE llx_societe SET nom = nom || ' (rehearsal)';",
        setup.sandbox_database, setup.sandbox_role,
    )
    documents = setup.sandbox_documents
    (documents / "rehearsal.txt").write_text("agent\n")
    first_folder = sorted(path for path in documents.iterdir() if path.is_dir())[0]
    shutil.rmtree(first_folder)
    (documents / "societe" / "rehearsal" / "logo.png").parent.mkdir(parents=True)
    (documents / "societe" / "rehearsal" / "logo.png").write_bytes(b"png")
    replaced = next(path for path in sorted(documents.rglob("*")) if path.is_file() and path.name != "rehearsal.txt")
    replaced.unlink()
    replaced.write_bytes(b"a new file with the same name")


MANIFEST_SCRIPT = (
    r"""cd "$1" && find . \( -type f -printf '%P\tf\t%s\t%T@\n' \) -o -printf '%P\t%y\t%T@\n' | LC_ALL=C sort"""
)


def manifest(root: Path) -> str:
    """The manifest of checkpoint.sh, computed with the same find command."""
    return subprocess.run(["sh", "-c", MANIFEST_SCRIPT, "sh", str(root)],
                          check=True, capture_output=True, text=True).stdout


def recorded_manifest(setup: KubeSetup, name: str) -> str:
    return (store(setup) / name / "manifest").read_text()


# -- save, list, drop, status, rewind ---------------------------------------------------


def test_save_puts_store_beside_documents_in_pod(kube_ckpt):
    name = saved(kube_ckpt)

    folder = store(kube_ckpt) / name
    assert (folder / "meta").is_file()
    assert "method=template" in (folder / "meta").read_text()
    assert "documents_method=hardlinks" in (folder / "meta").read_text()
    assert recorded_manifest(kube_ckpt, name) == manifest(kube_ckpt.sandbox_documents)
    assert kube_ckpt.pg.psql(
        f"SELECT count(*) FROM pg_database WHERE datname = '{kube_ckpt.sandbox_database}__ckpt_{name}'").strip() == "1"


def test_rewind_restores_rows_documents_and_checksums(kube_ckpt):
    name = saved(kube_ckpt)
    database, documents = checksums(kube_ckpt), documents_snapshot(kube_ckpt.sandbox_documents)
    rehearse(kube_ckpt)

    result = kube_ckpt.run("rewind", "--yes")

    rehearsal_rows = kube_ckpt.pg.psql("SELECT count(*) FROM llx_c_country WHERE code = 'QQ'", kube_ckpt.sandbox_database)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rehearsal_rows.strip() == "0"
    assert checksums(kube_ckpt) == database
    assert manifest(kube_ckpt.sandbox_documents) == recorded_manifest(kube_ckpt, name)
    assert documents_snapshot(kube_ckpt.sandbox_documents) == documents


def test_rewind_leaves_app_replicas_alone(kube_ckpt):
    saved(kube_ckpt)
    rehearse(kube_ckpt)

    result = kube_ckpt.run("rewind", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert kube_ckpt.deployment()["spec"]["replicas"] == 2


def test_rewind_without_yes_changes_nothing(kube_ckpt):
    saved(kube_ckpt)
    rehearse(kube_ckpt)
    database = checksums(kube_ckpt)

    result = kube_ckpt.run("rewind")

    assert result.returncode == EXIT_USAGE
    assert "--yes" in result.stderr
    assert checksums(kube_ckpt) == database


def test_list_and_drop(kube_ckpt):
    saved(kube_ckpt)
    saved(kube_ckpt)
    first, second = listed(kube_ckpt)

    result = kube_ckpt.run("checkpoint-drop", first)

    assert result.returncode == 0, result.stderr
    assert listed(kube_ckpt) == [second]
    assert not (store(kube_ckpt) / first).exists()
    assert kube_ckpt.pg.psql(
        f"SELECT count(*) FROM pg_database WHERE datname = '{kube_ckpt.sandbox_database}__ckpt_{first}'").strip() == "0"


def test_retention_keeps_configured_count(kube_ckpt):
    for _ in range(3):
        saved(kube_ckpt, LIFECYCLE_CHECKPOINT_KEEP="2")

    assert len(listed(kube_ckpt)) == 2


def test_status_reports_documents_change(kube_ckpt):
    saved(kube_ckpt)
    unchanged = kube_ckpt.run("checkpoint-status")
    (kube_ckpt.sandbox_documents / "rehearsal.txt").write_text("agent\n")

    changed = kube_ckpt.run("checkpoint-status")

    assert unchanged.returncode == 0, unchanged.stderr
    assert "database_changed=no documents_changed=no" in unchanged.stdout
    assert "documents_changed=yes" in changed.stdout


def test_configured_store_path_in_pod(kube_ckpt):
    folder = kube_ckpt.sandbox_documents.parent / "elsewhere"

    name = saved(kube_ckpt, LIFECYCLE_CHECKPOINT_DIR=str(folder))

    assert (folder / name / "meta").is_file()
    assert listed(kube_ckpt) == []


def test_documents_rewritten_through_hard_link_rejected(kube_ckpt):
    name = saved(kube_ckpt)
    rewritten = next(path for path in sorted(kube_ckpt.sandbox_documents.rglob("*")) if path.is_file())
    # Writing in place keeps the inode that the checkpoint shares.
    with open(rewritten, "r+b") as handle:
        handle.write(b"rewritten in place")
    database, documents = checksums(kube_ckpt), manifest(kube_ckpt.sandbox_documents)

    result = kube_ckpt.run("rewind", "--yes")

    assert result.returncode == EXIT_REFUSED
    assert "rewritten in place" in result.stderr
    assert checksums(kube_ckpt) == database
    assert manifest(kube_ckpt.sandbox_documents) == documents
    assert not (store(kube_ckpt) / "rewind.journal").exists()
    assert (store(kube_ckpt) / name / "meta").is_file()


# -- the dump path ------------------------------------------------------------------


def test_dump_path_says_slower_and_checks_copy(kube_dump):
    result = kube_dump.run("checkpoint-save")
    name = re.findall(r"saved checkpoint (\S+)", result.stdout)[0]
    meta = (store(kube_dump) / name / "meta").read_text()
    dump = (store(kube_dump) / name / "database.dump").read_bytes()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the slower path" in result.stdout
    assert "method=dump" in meta
    assert f"dump_sha256={hashlib.sha256(dump).hexdigest()}" in meta
    assert f"dump_size={len(dump)}" in meta
    assert list(Path("/tmp").glob(f"{kube_dump.work_parent.name}*checkpoint.dump")) == []


def test_truncated_dump_copy_into_store_is_retried(kube_dump):
    profile = kube_dump.sandbox.exec_profile(NAMESPACE, "postgres")
    copies = []

    def truncate_first_copy(call: ExecCall) -> None:
        if call.command[0] == "cat":
            copies.append(call)
            profile.truncate_stdout_after_bytes = 50_000 if len(copies) == 1 else None

    profile.on_exec = truncate_first_copy
    name = saved(kube_dump)
    dump = (store(kube_dump) / name / "database.dump").read_bytes()

    assert copies[0].truncated
    assert len(copies) == 2
    assert f"dump_sha256={hashlib.sha256(dump).hexdigest()}" in (store(kube_dump) / name / "meta").read_text()


def test_dump_path_rewind_restores_checksums(kube_dump):
    name = saved(kube_dump)
    database = checksums(kube_dump)
    rehearse(kube_dump)

    result = kube_dump.run("rewind", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the slower path" in result.stdout
    assert checksums(kube_dump) == database
    assert manifest(kube_dump.sandbox_documents) == recorded_manifest(kube_dump, name)


def test_dump_changed_in_store_rejected(kube_dump):
    name = saved(kube_dump)
    rehearse(kube_dump)
    database = checksums(kube_dump)
    with open(store(kube_dump) / name / "database.dump", "ab") as handle:
        handle.write(b"x")

    result = kube_dump.run("rewind", "--yes")

    assert result.returncode == EXIT_REWIND
    assert "recorded at save" in result.stderr
    assert checksums(kube_dump) == database


# -- SIGKILL before and after COMMIT ----------------------------------------------------


def rewind_sessions(setup: KubeSetup, waiting: bool = False) -> int:
    condition = " AND wait_event_type = 'Lock' AND wait_event = 'advisory'" if waiting else ""
    with connect(setup.pg, "postgres") as connection:
        return connection.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE application_name = %s{condition}", (REWIND_APPLICATION,)
        ).fetchone()[0]


def test_sigkill_before_commit_keeps_old_sandbox(kube_ckpt):
    name = saved(kube_ckpt)
    checkpoint_state = checksums(kube_ckpt)
    rehearse(kube_ckpt)
    rehearsal_state, rehearsal_documents = checksums(kube_ckpt), manifest(kube_ckpt.sandbox_documents)

    # The gate sits between the two renames, in the transaction on database postgres.
    with connect(kube_ckpt.pg, "postgres") as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))
        process = kube_ckpt.start("rewind", "--yes", LIFECYCLE_TEST_REWIND_GATE_LOCK=str(GATE_LOCK_KEY))
        wait_for(lambda: rewind_sessions(kube_ckpt, waiting=True) == 1, timeout=120,
                 what="the rename transaction to wait on the gate")
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_KEY,))
        # psql runs in the database pod and outlives the script until its input ends.
        wait_for(lambda: rewind_sessions(kube_ckpt) == 0, timeout=60, what="the rename session to end")

    assert checksums(kube_ckpt) == rehearsal_state
    assert manifest(kube_ckpt.sandbox_documents) == rehearsal_documents

    # The killed run left its Lease behind, as a killed refresh does.
    again = kube_ckpt.run("rewind", "--yes", "--break-lock")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "had not committed" in again.stdout
    assert checksums(kube_ckpt) == checkpoint_state
    assert manifest(kube_ckpt.sandbox_documents) == recorded_manifest(kube_ckpt, name)


def _is_documents_apply(call: ExecCall) -> bool:
    return any("folders=$(mktemp)" in argument for argument in call.command)


def test_sigkill_after_commit_finished_by_next_command(kube_ckpt):
    name = saved(kube_ckpt)
    checkpoint_state = checksums(kube_ckpt)
    rehearse(kube_ckpt)
    holder: list[subprocess.Popen] = []
    fired = threading.Event()

    def kill_script(call: ExecCall) -> None:
        if _is_documents_apply(call) and not fired.is_set():
            fired.set()
            os.killpg(holder[0].pid, signal.SIGKILL)
            call.command[:] = ["true"]

    kube_ckpt.sandbox.exec_profile(NAMESPACE, "dolibarr").on_exec = kill_script
    process = kube_ckpt.start("rewind", "--yes")
    holder.append(process)
    process.communicate(timeout=600)
    kube_ckpt.sandbox.exec_profile(NAMESPACE, "dolibarr").on_exec = None

    assert fired.is_set()
    assert process.returncode == -signal.SIGKILL
    assert checksums(kube_ckpt) == checkpoint_state
    assert (store(kube_ckpt) / "rewind.journal").is_file()
    assert "database_changed=interrupted-rewind" in kube_ckpt.run("checkpoint-status").stdout

    result = kube_ckpt.run("checkpoint-save", "--break-lock")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "had committed its database: finishing its documents" in result.stdout
    assert manifest(kube_ckpt.sandbox_documents) == recorded_manifest(kube_ckpt, name)
    assert not (store(kube_ckpt) / "rewind.journal").exists()


# -- bad input ----------------------------------------------------------------------


def test_relative_store_path_rejected(kube_ckpt):
    result = kube_ckpt.run("checkpoint-list", LIFECYCLE_CHECKPOINT_DIR="checkpoints")

    assert result.returncode == EXIT_USAGE
    assert "LIFECYCLE_CHECKPOINT_DIR is invalid (checkpoints)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_app_workload_fails_with_command_code(kube_ckpt):
    saved(kube_ckpt)

    listing = kube_ckpt.run("checkpoint-list", SANDBOX_APP_WORKLOAD="deployment/missing")
    rewind = kube_ckpt.run("rewind", "--yes", SANDBOX_APP_WORKLOAD="deployment/missing")

    assert listing.returncode == EXIT_PREFLIGHT
    assert "deployment/missing" in listing.stderr
    assert len(listing.stderr.strip().splitlines()) == 1
    assert rewind.returncode == EXIT_REWIND
    assert "Traceback" not in rewind.stderr


# -- the invoke command line ------------------------------------------------------------


@pytest.fixture
def standin(kube_ckpt):
    """The Dolibarr stand-in serving the sandbox database, so that rewind can check the agent's key."""
    server = StandinServer(kube_ckpt.pg.uri(kube_ckpt.sandbox_database, kube_ckpt.sandbox_role), FIXTURE_INSTANCE_ID,
                           kube_ckpt.sandbox_documents, pgpassfile=kube_ckpt.pg.pgpass_file)
    server.start()
    yield server
    server.stop()


def cli_config(setup: KubeSetup, standin_url: str) -> dict:
    """Return a config for the kubectl transport whose agent is the fixture's admin and its API key."""
    config = invoke_config(setup)
    key_file = setup.home / "admin.key"
    write_private(key_file, FIXTURE_API_KEYS["admin"].encode())
    config["sandbox"]["url"] = standin_url
    config["agent"] = {"login": "admin", "key_file": str(key_file)}
    # guards.apply connects from this machine, so it needs a URI besides the pod settings.
    config["lifecycle"]["sandbox_db_uri"] = setup.pg.uri(setup.sandbox_database, setup.sandbox_role)
    config["lifecycle"]["pgpassfile"] = str(setup.pg.pgpass_file)
    return config


def invoke(setup: KubeSetup, config: dict, *arguments: str) -> subprocess.CompletedProcess:
    return run_invoke(list(arguments), config, setup.home, timeout=600,
                      env={"HOME": str(setup.home), "TMPDIR": str(setup.work_parent)})


def test_invoke_save_rewind_and_status(kube_ckpt, standin):
    config = cli_config(kube_ckpt, standin.url)
    applied = invoke(kube_ckpt, config, "guards.apply")
    save = invoke(kube_ckpt, config, "checkpoint.save")
    database = checksums(kube_ckpt)
    rehearse(kube_ckpt)

    rewind = invoke(kube_ckpt, config, "rewind", "--yes")
    status = json.loads(invoke(kube_ckpt, config, "status", "--json").stdout)

    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert save.returncode == 0, save.stdout + save.stderr
    assert rewind.returncode == 0, rewind.stdout + rewind.stderr
    assert "verify_api_key" in rewind.stdout
    assert checksums(kube_ckpt) == database
    assert status["checkpoint"]["name"] == listed(kube_ckpt)[0]
    assert status["checkpoint"]["documents_changed"] == "no"


def test_invoke_rejects_relative_store_for_kubectl(kube_ckpt):
    config = invoke_config(kube_ckpt)
    config["checkpoints"] = {"dir": "checkpoints"}

    result = invoke(kube_ckpt, config, "checkpoint.list")

    assert_one_line_error(result, "checkpoint.checkpoints.dir", "absolute path")


def test_held_lease_rejects_rewind(kube_ckpt):
    saved(kube_ckpt)
    before = checksums(kube_ckpt)
    write_lease(kube_ckpt, "alice@laptop pid 4242", "2099-01-01T00:00:00.000000Z")

    result = kube_ckpt.run("rewind", "--yes")

    assert result.returncode == 16, result.stdout + result.stderr
    assert "alice@laptop pid 4242" in result.stderr
    assert checksums(kube_ckpt) == before
