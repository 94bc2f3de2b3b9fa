"""Checkpoint commands of the real lifecycle script run on a bastion over real SSH."""

from __future__ import annotations

from pathlib import Path

from checkpoint.bastion import run_lifecycle_on_bastion
from checkpoint.outcome import Run
from checkpoint.settings import LifecycleSettings
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
