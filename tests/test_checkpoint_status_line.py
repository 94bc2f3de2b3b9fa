"""The checkpoint line of ``invoke status``."""

from __future__ import annotations

from checkpoint.checkpoints import describe_checkpoint_status


def test_interrupted_rewind_names_fix():
    line = describe_checkpoint_status(
        {"name": "20261204T120000Z", "age_seconds": 60, "database_changed": "interrupted-rewind", "documents_changed": "yes"}
    )

    assert "interrupted" in line
    assert "run invoke rewind --yes" in line


def test_unchanged_checkpoint_line():
    line = describe_checkpoint_status(
        {"name": "20261204T120000Z", "age_seconds": 60, "database_changed": "no", "documents_changed": "no"}
    )

    assert line == "checkpoint 20261204T120000Z: 60s old; since then database changed: no, documents changed: no"


def test_missing_checkpoint_names_save():
    assert describe_checkpoint_status({"name": None}) == "checkpoint: none; take one with invoke checkpoint.save"


def test_busy_sandbox_line():
    line = describe_checkpoint_status(
        {"name": "20261204T120000Z", "age_seconds": 60, "database_changed": "busy", "documents_changed": "busy"}
    )

    assert "another run is changing the sandbox now" in line
