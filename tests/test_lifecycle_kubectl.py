"""The kubectl transport of ops/sandbox/sandbox-lifecycle.sh, with ArgoCD and the refresh lock.

The real kubectl talks to the stand-in API server; its ``exec`` runs psql, pg_dump, tar and
sha256sum locally against the session's PostgreSQL server and real documents folders. Every
test checks the cluster (sync policy, replicas, lock) and the sandbox's content.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from checkpoint.lab.pgcluster import free_port, wait_for
from tests.cli_helpers import run_invoke
from tests.conftest import PROD_DOCUMENTS_TARBALL, PROD_DUMP, make_shared_tmpdir
from tests.kube_helpers import (
    APP_REPLICAS,
    ARGOCD_NAMESPACE,
    KUBECTL,
    NAMESPACE,
    KubeSetup,
    add_application,
    add_side,
    write_lease,
)
from tests.lifecycle_helpers import documents_snapshot, parse_phase_lines
from tests.support.kube_api import ExecCall, KubeApiServer

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")

PROD_ROLE = "kube_prod"
SANDBOX_ROLE = "kube_sandbox"
TEMPLATE_DATABASE = "kube_prod_template"
NUMBERS = itertools.count(1)
WAIT_SECONDS = 60

EXIT_PREFLIGHT = 10
EXIT_DUMP = 11
EXIT_RESTORE = 13
EXIT_DOCUMENTS = 15
EXIT_LOCKED = 16
EXIT_CLUSTER = 17

OLD_SANDBOX_SQL = """
CREATE TABLE public.old_notes (id integer PRIMARY KEY, body text NOT NULL);
INSERT INTO public.old_notes VALUES (1, 'restored last month');
"""


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_pg(pg_cluster, fixture_files):
    pg_cluster.create_role(PROD_ROLE)
    pg_cluster.create_role(SANDBOX_ROLE)
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DATABASE}"')
    pg_cluster.create_database(TEMPLATE_DATABASE, PROD_ROLE)
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "-d", pg_cluster.uri(TEMPLATE_DATABASE, PROD_ROLE),
         str(PROD_DUMP)],
        check=True, capture_output=True, env={**os.environ, **pg_cluster.client_env()},
    )
    return pg_cluster


@pytest.fixture(scope="session")
def kube_documents_source(fixture_files):
    folder = make_shared_tmpdir("kube-documents-")
    with tarfile.open(PROD_DOCUMENTS_TARBALL) as archive:
        archive.extractall(folder, filter="tar")
    yield folder / "documents"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def kube(kube_pg, kube_documents_source):
    pg = kube_pg
    number = next(NUMBERS)
    prod_database, sandbox_database = f"kube_prod_{number}", f"kube_sandbox_{number}"
    pg.psql(f'CREATE DATABASE "{prod_database}" TEMPLATE "{TEMPLATE_DATABASE}" OWNER "{PROD_ROLE}"')
    pg.create_database(sandbox_database, SANDBOX_ROLE)
    pg.psql(OLD_SANDBOX_SQL, sandbox_database, SANDBOX_ROLE)

    folder = make_shared_tmpdir("kube-test-")
    prod_documents = folder / "prod-documents"
    shutil.copytree(kube_documents_source, prod_documents, symlinks=True)
    sandbox_documents = folder / "sandbox-documents"
    (sandbox_documents / "stale").mkdir(parents=True)
    (sandbox_documents / "stale" / "old-invoice.pdf").write_bytes(b"%PDF-1.4 old sandbox invoice")
    (folder / "work").mkdir()
    (folder / "home").mkdir()

    server = KubeApiServer()
    server.start()
    prod, sandbox = server.add_cluster("prod"), server.add_cluster("sandbox")
    add_side(prod, pg, 1)
    add_side(sandbox, pg, APP_REPLICAS)
    setup = KubeSetup(server, prod, sandbox, pg, prod_database, sandbox_database, PROD_ROLE, SANDBOX_ROLE,
                      prod_documents, sandbox_documents, folder / "home",
                      server.write_kubeconfig(folder / "kubeconfig", ["sandbox", "prod"]), folder / "work")
    yield setup

    server.stop()
    for database in (prod_database, sandbox_database):
        pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def argo(kube):
    """The sandbox's Dolibarr, deployed by a self-healing Application."""
    add_application(kube.sandbox)
    return kube


def assert_cluster_restored(setup: KubeSetup, application_before: dict) -> None:
    application = setup.application()
    deployment = setup.deployment()
    assert application["spec"]["syncPolicy"] == application_before["spec"]["syncPolicy"]
    assert setup.recorded_annotations(application) == {}
    assert deployment["spec"]["replicas"] == APP_REPLICAS
    assert setup.recorded_annotations(deployment) == {}
    assert setup.lock() is None


def assert_sandbox_old_or_new(setup: KubeSetup, old_tables, prod_tables) -> None:
    assert setup.sandbox_state().tables in (old_tables, prod_tables)


# -- refresh ------------------------------------------------------------------


def test_refresh_makes_sandbox_equal_to_prod(argo):
    prod_before = argo.prod_state()
    application_before = copy.deepcopy(argo.application())

    result = argo.run("refresh", "--yes")

    assert result.returncode == 0, result.stderr
    assert argo.sandbox_state().tables == prod_before.tables
    assert argo.documents_equal()
    assert argo.prod_state() == prod_before
    assert_cluster_restored(argo, application_before)
    assert list(argo.work_parent.iterdir()) == []


def test_refresh_logs_kubectl_phases(argo):
    result = argo.run("refresh", "--yes")

    started = [phase for phase, text in parse_phase_lines(result.stdout) if text == "start"]
    assert result.returncode == 0, result.stderr
    assert started == ["lock", "recover", "preflight", "dump", "verify-dump", "pause", "restore", "verify",
                       "resume", "documents"]


def test_dump_compression_reaches_pod(argo):
    result = argo.run("refresh", "--yes", "--db-only", LIFECYCLE_DUMP_COMPRESSION="0")

    dumps = [call.command for call in argo.prod.exec_calls if _is_dump(call)]
    assert result.returncode == 0, result.stderr
    assert len(dumps) == 1
    assert dumps[0][-1] == "0"


def test_truncated_dump_copy_is_retried(argo):
    profile = argo.prod.exec_profile(NAMESPACE, "postgres")
    copies = []

    def truncate_first_copy(call: ExecCall) -> None:
        if call.command[0] == "cat":
            copies.append(call)
            profile.truncate_stdout_after_bytes = 100_000 if len(copies) == 1 else None

    profile.on_exec = truncate_first_copy
    prod_tables = argo.prod_state().tables

    result = argo.run("refresh", "--yes", "--db-only")

    assert result.returncode == 0, result.stderr
    assert "copy 1 of 3 arrived with 100000 bytes" in result.stdout
    assert copies[0].truncated
    assert argo.sandbox_state().tables == prod_tables


def test_truncated_dump_copy_leaves_sandbox_untouched(argo):
    argo.prod.exec_profile(NAMESPACE, "postgres").truncate_stdout_after_bytes = 100_000
    old_tables = argo.sandbox_state().tables
    application_before = copy.deepcopy(argo.application())

    result = argo.run("refresh", "--yes")

    assert result.returncode == EXIT_DUMP
    assert "every one of 3 copies of the dump" in result.stderr
    assert argo.sandbox_state().tables == old_tables
    assert_cluster_restored(argo, application_before)
    assert [call.truncated for call in argo.prod.exec_calls if call.command[0] == "cat"] == [True, True, True]


# -- faults at each phase -----------------------------------------------------------


def _is_dump(call: ExecCall) -> bool:
    return any("pg_dump -Fc" in argument for argument in call.command)


def _is_restore_session(call: ExecCall) -> bool:
    return "PGAPPNAME=sandbox-lifecycle restore" in call.command and "-c" not in call.command


def _is_unpack(call: ExecCall) -> bool:
    return any("tar -x" in argument for argument in call.command)


# phase -> (cluster name, workload, predicate)
EXEC_TRIGGERS = {
    "dump": ("prod", "postgres", _is_dump),
    "restore": ("sandbox", "postgres", _is_restore_session),
    "documents": ("sandbox", "dolibarr", _is_unpack),
}
FAILURE_CODES = {"dump": EXIT_DUMP, "pause": EXIT_CLUSTER, "restore": EXIT_RESTORE, "documents": EXIT_DOCUMENTS}
SIGNALS = {"failure": None, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
SIGNAL_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}


def inject_at_exec(setup: KubeSetup, phase: str, action, *, once: bool = True) -> threading.Event:
    """Run ``action(call)`` when an exec of ``phase`` starts in its pod: the first one, or every one."""
    cluster_name, workload, predicate = EXEC_TRIGGERS[phase]
    cluster = setup.prod if cluster_name == "prod" else setup.sandbox
    fired = threading.Event()

    def on_exec(call: ExecCall) -> None:
        if (not once or not fired.is_set()) and predicate(call):
            fired.set()
            action(call)

    cluster.exec_profile(NAMESPACE, workload).on_exec = on_exec
    return fired


def fail_exec(call: ExecCall) -> None:
    raise RuntimeError("fault injected by the test")


def run_with_fault(setup: KubeSetup, phase: str, signum: signal.Signals | None) -> subprocess.CompletedProcess:
    """Run a refresh, failing it or sending ``signum`` to its process group during ``phase``."""
    if phase == "pause":
        # Slow pod stops give a wide window while the script waits for the pods to go.
        setup.sandbox.timing.pod_stop = 3.0
    if phase == "pause" and signum is None:
        return setup.run("refresh", "--yes", LIFECYCLE_KUBE_WAIT_SECONDS="1")

    holder: list[subprocess.Popen] = []
    if phase != "pause":
        action = fail_exec if signum is None else (lambda call: os.killpg(holder[0].pid, signum))
        # A failure repeats, so that the script's bounded retries cannot get past it.
        fired = inject_at_exec(setup, phase, action, once=signum is not None)
    process = setup.start("refresh", "--yes")
    holder.append(process)
    if phase == "pause":
        wait_for(lambda: setup.deployment()["spec"]["replicas"] == 0 or process.poll() is not None,
                 WAIT_SECONDS, "the script to scale the sandbox's Dolibarr to 0")
        os.killpg(process.pid, signum)
    stdout, stderr = process.communicate(timeout=600)
    if phase != "pause":
        assert fired.is_set(), f"the fault of phase {phase} never fired: {stderr}"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("fault", list(SIGNALS))
@pytest.mark.parametrize("phase", ["dump", "pause", "restore", "documents"])
def test_fault_puts_cluster_back(argo, phase, fault):
    signum = SIGNALS[fault]
    old_tables = argo.sandbox_state().tables
    old_documents = documents_without_root(argo)
    prod_tables = argo.prod_state().tables
    application_before = copy.deepcopy(argo.application())

    result = run_with_fault(argo, phase, signum)

    expected_code = FAILURE_CODES[phase] if signum is None else SIGNAL_CODES[signum]
    assert result.returncode == expected_code, result.stderr
    assert_cluster_restored(argo, application_before)
    expected_tables = prod_tables if phase == "documents" else old_tables
    assert argo.sandbox_state().tables == expected_tables
    assert documents_without_root(argo) == old_documents


def documents_without_root(setup: KubeSetup) -> dict:
    """Return the sandbox's documents without the top folder, whose mtime the removed staging folder changes."""
    snapshot = documents_snapshot(setup.sandbox_documents)
    del snapshot["."]
    return snapshot


# -- SIGKILL, recover and status ------------------------------------------------------


def kill_during_restore(setup: KubeSetup) -> None:
    holder: list[subprocess.Popen] = []
    inject_at_exec(setup, "restore", lambda call: os.killpg(holder[0].pid, signal.SIGKILL))
    process = setup.start("refresh", "--yes")
    holder.append(process)
    process.communicate(timeout=600)
    assert process.returncode == SIGNAL_CODES[signal.SIGKILL]
    setup.sandbox.exec_profile(NAMESPACE, "postgres").on_exec = None


def test_sigkill_leaves_recorded_values(argo):
    kill_during_restore(argo)

    application, deployment = argo.application(), argo.deployment()
    assert "automated" not in application["spec"]["syncPolicy"]
    assert deployment["spec"]["replicas"] == 0
    assert set(argo.recorded_annotations(application)) == {
        "sandbox-lifecycle.checkpoint/saved-sync-policy", "sandbox-lifecycle.checkpoint/paused-since"}
    assert argo.recorded_annotations(deployment)["sandbox-lifecycle.checkpoint/saved-replicas"] == str(APP_REPLICAS)
    assert argo.lock() is not None


def test_next_run_after_sigkill_is_refused_by_lock(argo):
    kill_during_restore(argo)

    result = argo.run("refresh", "--yes")

    assert result.returncode == EXIT_LOCKED
    assert "pid " in result.stderr
    assert argo.deployment()["spec"]["replicas"] == 0


def test_next_run_after_sigkill_puts_back_first(argo):
    application_before = copy.deepcopy(argo.application())
    prod_tables = argo.prod_state().tables
    kill_during_restore(argo)

    result = argo.run("refresh", "--yes", "--break-lock")

    phases = [phase for phase, text in parse_phase_lines(result.stdout)]
    assert result.returncode == 0, result.stderr
    assert ("recover", f"scaled deployment/dolibarr back to {APP_REPLICAS} replicas") in parse_phase_lines(result.stdout)
    assert phases.index("recover") < phases.index("preflight")
    assert_cluster_restored(argo, application_before)
    assert argo.sandbox_state().tables == prod_tables


def test_recover_after_sigkill_puts_back(argo):
    application_before = copy.deepcopy(argo.application())
    old_tables = argo.sandbox_state().tables
    kill_during_restore(argo)

    result = argo.run("recover", "--break-lock")

    assert result.returncode == 0, result.stderr
    assert_cluster_restored(argo, application_before)
    assert argo.sandbox_state().tables == old_tables


def test_recover_with_nothing_left_changes_nothing(argo):
    application_before = copy.deepcopy(argo.application())

    result = argo.run("recover")

    assert result.returncode == 0, result.stderr
    assert ("recover", "done in 0s unchanged") in parse_phase_lines(result.stdout) or "nothing to put back" in result.stdout
    assert_cluster_restored(argo, application_before)


# -- ArgoCD owners ------------------------------------------------------------------


@pytest.fixture
def appset_owned(kube):
    template = {"project": "default",
                "destination": {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE},
                "syncPolicy": {"automated": {"selfHeal": True, "prune": True}}}
    kube.sandbox.add_applicationset(ARGOCD_NAMESPACE, "sandboxes", template_spec=template)
    add_application(kube.sandbox, applicationset="sandboxes")
    return kube


def test_applicationset_owner_rejected(appset_owned):
    application_before = copy.deepcopy(appset_owned.application())
    old_tables = appset_owned.sandbox_state().tables

    result = appset_owned.run("refresh", "--yes")

    assert result.returncode == EXIT_PREFLIGHT
    assert "controlled by ApplicationSet sandboxes" in result.stderr
    assert "ARGOCD_PAUSE_OWNER=1" in result.stderr
    assert_cluster_restored(appset_owned, application_before)
    assert appset_owned.sandbox_state().tables == old_tables


def test_applicationset_owner_paused_when_allowed(appset_owned):
    application_before = copy.deepcopy(appset_owned.application())
    appset_before = copy.deepcopy(appset_owned.sandbox.get("applicationsets", ARGOCD_NAMESPACE, "sandboxes"))
    prod_tables = appset_owned.prod_state().tables

    result = appset_owned.run("refresh", "--yes", ARGOCD_PAUSE_OWNER="1")

    appset = appset_owned.sandbox.get("applicationsets", ARGOCD_NAMESPACE, "sandboxes")
    assert result.returncode == 0, result.stderr
    assert appset["spec"] == appset_before["spec"]
    assert appset_owned.recorded_annotations(appset) == {}
    assert_cluster_restored(appset_owned, application_before)
    assert appset_owned.sandbox_state().tables == prod_tables


# -- the lock -------------------------------------------------------------------------


def test_concurrent_refresh_rejected_with_holder(argo):
    write_lease(argo, "alice@laptop pid 4242", "2099-01-01T00:00:00.000000Z")
    old_tables = argo.sandbox_state().tables
    application_before = copy.deepcopy(argo.application())

    result = argo.run("refresh", "--yes")

    assert result.returncode == EXIT_LOCKED
    assert "alice@laptop pid 4242" in result.stderr
    assert argo.lock()["spec"]["holderIdentity"] == "alice@laptop pid 4242"
    assert argo.sandbox_state().tables == old_tables
    assert argo.application()["spec"] == application_before["spec"]


def test_break_lock_takes_over(argo):
    write_lease(argo, "alice@laptop pid 4242", "2099-01-01T00:00:00.000000Z")

    result = argo.run("refresh", "--yes", "--db-only", "--break-lock")

    assert result.returncode == 0, result.stderr
    assert "breaking the lock" in result.stdout
    assert argo.lock() is None


def test_lock_older_than_max_age_is_broken(argo):
    write_lease(argo, "alice@laptop pid 4242", "2020-01-01T00:00:00.000000Z")

    result = argo.run("refresh", "--yes", "--db-only", LIFECYCLE_LOCK_MAX_AGE_SECONDS="3600")

    assert result.returncode == 0, result.stderr
    assert "longer than LIFECYCLE_LOCK_MAX_AGE_SECONDS=3600" in result.stdout
    assert argo.lock() is None


# -- versions -------------------------------------------------------------------------


def test_older_pg_dump_in_pod_rejected_before_any_change(argo, tmp_path):
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    (wrapper / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.11'\n")
    (wrapper / "pg_dump").chmod(0o755)
    tmp_path.chmod(0o755)
    argo.prod.exec_profile(NAMESPACE, "postgres").env["PATH"] = f"{wrapper}:{os.environ['PATH']}"
    old_tables = argo.sandbox_state().tables
    application_before = copy.deepcopy(argo.application())

    result = argo.run("refresh", "--yes")

    assert result.returncode == EXIT_PREFLIGHT
    assert "pg_dump is version 14 but the prod server is version 15" in result.stderr
    assert_cluster_restored(argo, application_before)
    assert argo.sandbox_state().tables == old_tables


# -- the invoke command line ------------------------------------------------------------


def invoke_config(setup: KubeSetup) -> dict:
    """Return a checkpoint config that reaches the stand-in clusters; the sandbox URL answers nothing."""
    env = setup.env()
    lifecycle = {"transport": "kubectl", "kubeconfig": str(setup.kubeconfig), "work_dir": str(setup.work_parent),
                 "argocd_application": env["ARGOCD_APPLICATION"], "kube_wait_seconds": 60}
    for side in ("PROD", "SANDBOX"):
        for name in ("KUBE_CONTEXT", "NAMESPACE", "DB_WORKLOAD", "DB_CONTAINER", "DB_NAME", "DB_ROLE",
                     "APP_WORKLOAD", "DOCUMENTS_PATH"):
            lifecycle[f"{side}_{name}".lower()] = env[f"{side}_{name}"]
    return {"sandbox": {"url": f"http://127.0.0.1:{free_port()}"}, "lifecycle": lifecycle}


def run_cli(setup: KubeSetup, *arguments: str) -> subprocess.CompletedProcess:
    return run_invoke(list(arguments), invoke_config(setup), setup.home, timeout=600,
                      env={"HOME": str(setup.home), "TMPDIR": str(setup.work_parent)})


# The command line applies the default guards, which change these tables on purpose.
GUARDED_TABLES = ("public.llx_const", "public.llx_notify_def", "public.llx_webhook_target", "public.llx_cronjob")


def without_guarded(tables: dict) -> dict:
    return {name: value for name, value in tables.items() if name not in GUARDED_TABLES}


def test_invoke_refresh_through_kubectl(argo):
    application_before = copy.deepcopy(argo.application())
    prod_tables = argo.prod_state().tables

    result = run_cli(argo, "refresh", "--yes")
    mails_off = argo.pg.psql(
        "SELECT value FROM llx_const WHERE name = 'MAIN_DISABLE_ALL_MAILS'", argo.sandbox_database
    ).split()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "resume" in result.stdout
    assert without_guarded(argo.sandbox_state().tables) == without_guarded(prod_tables)
    assert mails_off and set(mails_off) == {"1"}
    assert argo.documents_equal()
    assert_cluster_restored(argo, application_before)


def test_invoke_status_reports_leftovers_until_recover(argo):
    application_before = copy.deepcopy(argo.application())
    kill_during_restore(argo)

    before = json.loads(run_cli(argo, "status", "--json").stdout)
    recovered = run_cli(argo, "recover", "--break-lock")
    after = json.loads(run_cli(argo, "status", "--json").stdout)

    assert any("self-heal paused since" in line for line in before["leftovers"]), before["leftovers"]
    assert any("scaled to 0 since" in line for line in before["leftovers"]), before["leftovers"]
    assert any("refresh lock held by" in line for line in before["leftovers"]), before["leftovers"]
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert after["leftovers"] == []
    assert_cluster_restored(argo, application_before)
