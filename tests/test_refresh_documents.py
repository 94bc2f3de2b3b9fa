"""Refresh of an already seeded sandbox: the documents comparison that runs before COMMIT,
and the dump compression setting.

The prod and sandbox databases and folders come from the fixtures of
``tests/test_lifecycle_script.py``: the real fixture dump and documents, and an older sandbox.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from checkpoint.lifecycle import lifecycle_environment
from checkpoint.settings import load_settings
from tests.cli_helpers import assert_one_line_error, run_invoke
from tests.conftest import PROD_DUMP
from tests.lifecycle_helpers import connect, documents_snapshot, parse_phase_lines
from tests.test_lifecycle_script import (  # noqa: F401 - the fixtures are used by name
    EXIT_COUNTS_DIFFER,
    EXIT_USAGE,
    lifecycle_server,
    prod_documents_source,
    setup,
)

def seeded(setup):
    """Refresh once, so the sandbox folder equals prod's, and return the setup."""
    result = setup.run("refresh", "--yes")
    assert result.returncode == 0, result.stderr
    return setup


def documents_messages(stdout: str) -> list[str]:
    return [text for phase, text in parse_phase_lines(stdout) if phase == "documents"]


def inode(path: Path) -> int:
    return path.lstat().st_ino


def any_file(root: Path) -> Path:
    return next(path for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink())


# -- re-seed of a seeded sandbox ---------------------------------------------------


def test_reseed_copies_only_changed_documents(setup):
    seeded(setup)
    prod, sandbox = setup.prod_documents, setup.sandbox_documents
    unchanged = any_file(sandbox)
    unchanged_inode = inode(unchanged)
    (prod / "facture" / "FA-NEW-0001").mkdir(parents=True)
    (prod / "facture" / "FA-NEW-0001" / "FA-NEW-0001.pdf").write_bytes(b"%PDF-1.4 new invoice")
    (prod / "edited.txt").write_text("written by prod after the first refresh\n")

    result = setup.run("refresh", "--yes")

    messages = documents_messages(result.stdout)
    assert result.returncode == 0, result.stderr
    assert any(message.startswith("compared before COMMIT: ") for message in messages), messages
    assert any(message.endswith(": 2 files copied, 0 deleted") for message in messages), messages
    assert inode(sandbox / unchanged.relative_to(sandbox)) == unchanged_inode
    assert documents_snapshot(sandbox) == documents_snapshot(prod)


def test_reseed_deletes_documents_removed_from_prod(setup):
    seeded(setup)
    prod, sandbox = setup.prod_documents, setup.sandbox_documents
    (sandbox / "agent-upload" / "nested").mkdir(parents=True)
    (sandbox / "agent-upload" / "nested" / "draft.pdf").write_bytes(b"written in the sandbox")
    removed = any_file(prod)
    removed.unlink()

    result = setup.run("refresh", "--yes")

    assert result.returncode == 0, result.stderr
    assert not (sandbox / "agent-upload").exists()
    assert not (sandbox / removed.relative_to(prod)).exists()
    assert documents_snapshot(sandbox) == documents_snapshot(prod)


def test_reseed_applies_mode_and_mtime_changes(setup):
    seeded(setup)
    prod, sandbox = setup.prod_documents, setup.sandbox_documents
    changed = any_file(prod)
    changed.chmod(0o600)
    os.utime(changed, (1_700_000_000, 1_700_000_000))

    result = setup.run("refresh", "--yes")

    copy = sandbox / changed.relative_to(prod)
    assert result.returncode == 0, result.stderr
    assert copy.stat().st_mode & 0o777 == 0o600
    assert copy.stat().st_mtime == 1_700_000_000
    assert documents_snapshot(sandbox) == documents_snapshot(prod)


def test_reseed_replaces_file_with_folder_and_back(setup):
    seeded(setup)
    prod, sandbox = setup.prod_documents, setup.sandbox_documents
    (prod / "was-file").mkdir()
    (prod / "was-file" / "inside.txt").write_text("a folder now\n")
    (sandbox / "was-file").write_text("a file before\n")
    (prod / "was-folder").write_text("a file now\n")
    (sandbox / "was-folder" / "deeper").mkdir(parents=True)
    (sandbox / "was-folder" / "deeper" / "old.txt").write_text("a folder before\n")

    result = setup.run("refresh", "--yes")

    assert result.returncode == 0, result.stderr
    assert documents_snapshot(sandbox) == documents_snapshot(prod)


@pytest.mark.parametrize(
    "name",
    ["#starts-with-hash.pdf", "; starts with semicolon", "line\nbreak.pdf", "trailing space ", "tab\there", "é-accent.pdf"],
    ids=["hash", "semicolon", "newline", "trailing-space", "tab", "utf8"],
)
def test_reseed_handles_unusual_names(setup, name):
    seeded(setup)
    prod, sandbox = setup.prod_documents, setup.sandbox_documents
    (prod / name).write_text("new in prod\n")
    (sandbox / f"stale {name}").write_text("only in the sandbox\n")

    result = setup.run("refresh", "--yes")

    assert result.returncode == 0, result.stderr
    assert (sandbox / name).read_text() == "new in prod\n"
    assert not (sandbox / f"stale {name}").exists()
    assert documents_snapshot(sandbox) == documents_snapshot(prod)


def test_reseed_without_changes_reports_unchanged(setup):
    seeded(setup)

    result = setup.run("refresh", "--yes")

    lines = parse_phase_lines(result.stdout)
    assert result.returncode == 0, result.stderr
    assert any(phase == "documents" and text.endswith("unchanged") for phase, text in lines), lines
    assert documents_snapshot(setup.sandbox_documents) == documents_snapshot(setup.prod_documents)


# -- when the comparison is not used ------------------------------------------------


def test_empty_sandbox_folder_gets_full_sync(setup):
    shutil.rmtree(setup.sandbox_documents)
    setup.sandbox_documents.mkdir()

    result = setup.run("refresh", "--yes")

    messages = documents_messages(result.stdout)
    assert result.returncode == 0, result.stderr
    assert any(message.startswith("no comparison ran before COMMIT") for message in messages), messages
    assert documents_snapshot(setup.sandbox_documents) == documents_snapshot(setup.prod_documents)


def test_failed_comparison_falls_back_to_full_sync(setup, tmp_path):
    failing_bin = tmp_path / "bin"
    failing_bin.mkdir()
    (failing_bin / "comm").write_text("#!/bin/sh\necho 'comm: simulated failure' >&2\nexit 1\n")
    (failing_bin / "comm").chmod(0o755)

    result = setup.run("refresh", "--yes", PATH=f"{failing_bin}:{os.environ['PATH']}")

    messages = documents_messages(result.stdout)
    assert result.returncode == 0, result.stderr
    assert any("comm: simulated failure" in message for message in messages), messages
    assert any("rsync compares every entry instead" in message for message in messages), messages
    assert documents_snapshot(setup.sandbox_documents) == documents_snapshot(setup.prod_documents)


def test_db_only_runs_no_comparison(setup):
    result = setup.run("refresh", "--yes", "--db-only")

    assert result.returncode == 0, result.stderr
    assert not any(text.startswith("compared before COMMIT") for _, text in parse_phase_lines(result.stdout))


def test_failed_restore_leaves_documents_untouched(setup):
    """The comparison runs during the restore but only reads, so a rollback keeps the old documents."""
    with connect(setup.cluster, setup.prod_database) as connection:
        connection.execute("DELETE FROM public.llx_const WHERE rowid = (SELECT max(rowid) FROM public.llx_const)")
    documents_before = documents_snapshot(setup.sandbox_documents)

    result = setup.run("refresh", "--yes", LIFECYCLE_TEST_DUMP_FILE=str(PROD_DUMP))

    assert result.returncode == EXIT_COUNTS_DIFFER
    assert documents_snapshot(setup.sandbox_documents) == documents_before


# -- dump compression ----------------------------------------------------------------


@pytest.mark.parametrize("level", ["0", "9"])
def test_dump_compression_level_accepted(setup, level):
    result = setup.run("refresh", "--yes", "--db-only", LIFECYCLE_DUMP_COMPRESSION=level)

    assert result.returncode == 0, result.stderr
    assert setup.sandbox_state().tables == setup.prod_state().tables


def test_uncompressed_dump_is_larger(setup):
    def dump_bytes(level: str) -> int:
        result = setup.run("refresh", "--yes", "--db-only", LIFECYCLE_DUMP_COMPRESSION=level)
        assert result.returncode == 0, result.stderr
        wrote = next(text for phase, text in parse_phase_lines(result.stdout) if phase == "dump" and text.startswith("wrote "))
        return int(wrote.split()[1])

    assert dump_bytes("0") > dump_bytes("9")


@pytest.mark.parametrize("value", ["10", "-1", "fast", "1.5", " "])
def test_invalid_dump_compression_rejected(setup, value):
    result = setup.run("refresh", "--yes", LIFECYCLE_DUMP_COMPRESSION=value)

    assert result.returncode == EXIT_USAGE
    assert f"LIFECYCLE_DUMP_COMPRESSION is invalid ({value})" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_dump_compression_setting_reaches_script(tmp_path):
    config = {"lifecycle": {"prod_db_uri": "postgresql://reader@127.0.0.1:5432/prod",
                            "sandbox_db_uri": "postgresql://owner@127.0.0.1:5432/sandbox",
                            "prod_documents_dir": str(tmp_path / "prod"),
                            "sandbox_documents_dir": str(tmp_path / "sandbox"),
                            "dump_compression": 0}}

    settings = load_settings({"checkpoint": config}, read_lab=False)

    assert lifecycle_environment(settings.lifecycle)["LIFECYCLE_DUMP_COMPRESSION"] == "0"


def test_dump_compression_defaults_to_one(tmp_path):
    settings = load_settings({"checkpoint": {}}, read_lab=False)

    assert settings.lifecycle.dump_compression == 1


@pytest.mark.parametrize("value", [10, -1, "fast", True, 1.5])
def test_invalid_dump_compression_setting_one_line(tmp_path, value):
    result = run_invoke(["status"], {"lifecycle": {"dump_compression": value}}, tmp_path)

    assert_one_line_error(result, "invalid checkpoint.lifecycle.dump_compression")
    assert result.returncode == 2
