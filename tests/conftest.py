"""Shared fixtures: a real PostgreSQL server and the real Dolibarr 20.0.2 fixture files."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from checkpoint.lab.pgcluster import PostgresCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = Path(os.environ.get("CHECKPOINT_FIXTURES_DIR", REPO_ROOT.parent / "shared" / "fixtures"))
PROD_DUMP = FIXTURES_DIR / "dolibarr-20.0.2-prod.dump"
PROD_DOCUMENTS_TARBALL = FIXTURES_DIR / "dolibarr-20.0.2-prod-documents.tar.gz"

# Facts about the fixture, from its README.
FIXTURE_INSTANCE_ID = "c60948b567fd7d47d065dc8956116913"
FIXTURE_ADMIN_PASSWORD = "AdminPass-123"
FIXTURE_API_KEYS = {
    "admin": "061cD3Rg6cmezOA8wZTE4inGL1uK54bN",
    "crm_integration": "CrmIntegrationKey-9f8e7d6c5b4a",
}


def make_shared_tmpdir(prefix: str) -> Path:
    """Create a temporary folder that the ``postgres`` user can traverse.

    pytest's own ``tmp_path`` lives under a mode 700 folder, which a server that
    runs as ``postgres`` (because PostgreSQL refuses root) cannot enter.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def fixture_files() -> dict[str, Path]:
    missing = [path for path in (PROD_DUMP, PROD_DOCUMENTS_TARBALL) if not path.is_file()]
    if missing:
        pytest.fail(f"fixture file not found: {missing[0]}; set CHECKPOINT_FIXTURES_DIR to the fixtures folder")
    return {"dump": PROD_DUMP, "documents": PROD_DOCUMENTS_TARBALL}


@pytest.fixture(scope="session")
def fixture_documents_dir(fixture_files):
    """The fixture's documents tree, extracted once; tests must not change it."""
    from tests.db_helpers import extract_documents

    folder = make_shared_tmpdir("checkpoint-documents-")
    yield extract_documents(fixture_files["documents"], folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL server for the whole session; tests create their own databases in it."""
    root = make_shared_tmpdir("checkpoint-pg-")
    cluster = PostgresCluster(root)
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)
