"""Checkpoint commands of the real lifecycle script run on a bastion over real SSH."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpoint.bastion import run_lifecycle_on_bastion
from checkpoint.outcome import Run
from checkpoint.settings import LifecycleSettings
from tests.kube_helpers import KUBECTL
from tests.lifecycle_helpers import SCRIPT, documents_snapshot
from tests.test_bastion import (  # noqa: F401  (pytest fixtures)
    bastion_server,
    bastion_settings,
    client,
    client_key,
    jump_server,
    ssh_root,
    trusted,
)
from tests.test_checkpoint_kubectl import (  # noqa: F401  (pytest fixtures)
    checkpoint_pg,
    checksums,
    kube_ckpt,
    kube_documents_source,
    kube_dump,
    kube_pg,
    listed,
    manifest,
    recorded_manifest,
)
from tests.test_checkpoint_kubectl import rehearse as kube_rehearse
from tests.test_checkpoint_script import checkpoint_server, rehearse, setup  # noqa: F401  (pytest fixtures)


def lifecycle_for(setup) -> LifecycleSettings:  # noqa: F811
    return LifecycleSettings(
        script=SCRIPT,
        transport="local",
        prod_db_uri=setup.prod_uri,
        sandbox_db_uri=setup.sandbox_uri,
        prod_documents_dir=setup.prod_documents,
        sandbox_documents_dir=setup.sandbox_documents,
        pgpassfile=None,
        work_dir=None,
        checkpoint_dir=Path(setup.extra_env["LIFECYCLE_CHECKPOINT_DIR"]),
    )


def run_on_bastion(trusted, bastion_server, setup, *arguments: str) -> tuple[Run, list]:  # noqa: F811
    settings = bastion_settings(
        trusted, bastion_server, pgpassfile=str(setup.cluster.pgpass_file), work_dir=str(setup.work_parent)
    )
    run, lines = Run(arguments[0]), []
    run_lifecycle_on_bastion(lifecycle_for(setup), settings, run, db_only=False, arguments=list(arguments),
                             extra_env={"CHECKPOINT_AGENT_LOGIN": "ai_agent_sandbox"}, lines=lines)
    return run, lines


def test_save_and_rewind_through_bastion(trusted, bastion_server, setup):  # noqa: F811
    run_on_bastion(trusted, bastion_server, setup, "checkpoint-save")
    database, documents = setup.sandbox_state(), documents_snapshot(setup.sandbox_documents)
    rehearse(setup)

    run, _ = run_on_bastion(trusted, bastion_server, setup, "rewind", "--yes")

    assert [outcome.step for outcome in run.outcomes] == ["bastion_preflight", "checkpoint-check", "rewind"]
    assert setup.sandbox_state() == database
    assert documents_snapshot(setup.sandbox_documents) == documents


def test_list_through_bastion_returns_metadata(trusted, bastion_server, setup):  # noqa: F811
    run_on_bastion(trusted, bastion_server, setup, "checkpoint-save")

    _, lines = run_on_bastion(trusted, bastion_server, setup, "checkpoint-list")
    listed = [text for phase, text in lines if text.startswith("checkpoint=")]

    assert len(listed) == 1
    assert "agent_login=ai_agent_sandbox" in listed[0]
    assert "method=template" in listed[0]


# -- the kubectl transport --------------------------------------------------------------

KUBE_LOCAL_ONLY = ("PATH", "LANG", "HOME", "TMPDIR", "LIFECYCLE_TRANSPORT")
needs_kubectl = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


def kube_lifecycle_for(setup) -> LifecycleSettings:
    """Return kubectl settings; the bastion is this machine, so the kubeconfig path is the same there."""
    return LifecycleSettings(
        script=SCRIPT,
        transport="kubectl",
        prod_db_uri="",
        sandbox_db_uri="",
        prod_documents_dir=None,
        sandbox_documents_dir=None,
        pgpassfile=None,
        work_dir=None,
        kube_env={name: value for name, value in setup.env().items() if name not in KUBE_LOCAL_ONLY},
    )


def run_kube_on_bastion(trusted, bastion_server, setup, *arguments: str) -> Run:  # noqa: F811
    settings = bastion_settings(trusted, bastion_server, work_dir=str(setup.work_parent))
    run = Run(arguments[0])
    run_lifecycle_on_bastion(kube_lifecycle_for(setup), settings, run, db_only=False, arguments=list(arguments),
                             extra_env={"CHECKPOINT_AGENT_LOGIN": "ai_agent_sandbox"})
    return run


@needs_kubectl
def test_kubectl_save_and_rewind_through_bastion(trusted, bastion_server, kube_ckpt):  # noqa: F811
    run_kube_on_bastion(trusted, bastion_server, kube_ckpt, "checkpoint-save")
    name = listed(kube_ckpt)[0]
    database = checksums(kube_ckpt)
    kube_rehearse(kube_ckpt)

    run = run_kube_on_bastion(trusted, bastion_server, kube_ckpt, "rewind", "--yes")

    # With kubectl, rewind takes the refresh's Lease first, as phase lock.
    assert [outcome.step for outcome in run.outcomes] == ["bastion_preflight", "lock", "checkpoint-check", "rewind"]
    assert checksums(kube_ckpt) == database
    assert manifest(kube_ckpt.sandbox_documents) == recorded_manifest(kube_ckpt, name)


@needs_kubectl
def test_kubectl_dump_path_through_bastion(trusted, bastion_server, kube_dump):  # noqa: F811
    run_kube_on_bastion(trusted, bastion_server, kube_dump, "checkpoint-save")
    database = checksums(kube_dump)
    kube_rehearse(kube_dump)

    run_kube_on_bastion(trusted, bastion_server, kube_dump, "rewind", "--yes")

    assert checksums(kube_dump) == database
