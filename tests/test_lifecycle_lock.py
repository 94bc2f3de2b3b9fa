"""The local transport's lock: one run at a time changes a sandbox from this machine."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from tests.lifecycle_helpers import LifecycleSetup
from tests.test_checkpoint_script import SANDBOX_ROLE, checkpoint_server, make_setup, teardown_setup  # noqa: F401

EXIT_PREFLIGHT = 10
EXIT_LOCKED = 16


@pytest.fixture
def setup(checkpoint_server):  # noqa: F811
    setup = make_setup(checkpoint_server, SANDBOX_ROLE)
    yield setup
    teardown_setup(setup)


def lock_file(setup: LifecycleSetup) -> Path:
    return Path(f"{setup.sandbox_documents}.lifecycle.lock")


def hold_lock(path: Path, holder: str):
    """Take the lock as another run would, and return the open file that holds it."""
    handle = open(path, "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.truncate(0)
    handle.write(holder + "\n")
    handle.flush()
    return handle


@pytest.mark.parametrize("arguments", [("refresh", "--yes"), ("checkpoint-save",), ("rewind", "--yes")])
def test_held_lock_rejects_run(setup, arguments):
    database = setup.sandbox_state()
    with hold_lock(lock_file(setup), "refresh pid 4242 on bastion since 2026-12-04T10:00:00Z"):
        result = setup.run(*arguments)

    assert result.returncode == EXIT_LOCKED, result.stdout + result.stderr
    assert "refresh pid 4242 on bastion" in result.stderr
    assert str(lock_file(setup)) in result.stderr
    assert setup.sandbox_state() == database
    assert "Traceback" not in result.stderr


def test_released_lock_allows_run(setup):
    with hold_lock(lock_file(setup), "checkpoint-save pid 1 on here since then"):
        pass

    result = setup.run("checkpoint-save")

    assert result.returncode == 0, result.stdout + result.stderr
    assert lock_file(setup).read_text().startswith("checkpoint-save pid ")


def test_read_only_commands_ignore_lock(setup):
    with hold_lock(lock_file(setup), "refresh pid 4242 on bastion since then"):
        listed = setup.run("checkpoint-list")
        status = setup.run("checkpoint-status")

    assert listed.returncode == 0, listed.stderr
    assert status.returncode == 0, status.stderr


def test_status_reports_busy_sandbox(setup):
    assert setup.run("checkpoint-save").returncode == 0

    with hold_lock(lock_file(setup), "rewind pid 4242 on bastion since then"):
        status = setup.run("checkpoint-status")

    assert status.returncode == 0, status.stderr
    assert "database_changed=busy" in status.stdout


def test_unwritable_lock_folder_named(setup):
    missing = setup.sandbox_documents.parent / "missing" / "sandbox.lock"

    result = setup.run("refresh", "--yes", LIFECYCLE_LOCK_FILE=str(missing))

    assert result.returncode == EXIT_PREFLIGHT
    assert f"cannot open the lock file {missing}" in result.stderr
    assert "LIFECYCLE_LOCK_FILE" in result.stderr
