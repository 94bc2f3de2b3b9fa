"""The kubectl transport of ops/sandbox/sandbox-lifecycle.sh, with ArgoCD and the refresh lock.

The real kubectl talks to the stand-in API server; its ``exec`` runs psql, pg_dump, tar and
sha256sum locally against the session's PostgreSQL server and real documents folders. Every
test checks the cluster (sync policy, replicas, lock) and the sandbox's content.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from checkpoint.lab.pgcluster import wait_for
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

