"""Run the real ``invoke`` command line against this repository with a runtime config file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_invoke(args: list[str], config: dict[str, Any] | None, config_dir: Path, *, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``invoke -r REPO [-f config_dir/checkpoint.json] ARGS`` from ``config_dir``.

    Running from another folder than the repository checks that nothing depends on
    the current directory.
    """
    command = [sys.executable, "-m", "invoke", "-r", str(REPO_ROOT)]
    if config is not None:
        config_file = config_dir / "checkpoint.json"
        config_file.write_text(json.dumps({"checkpoint": config}))
        command += ["-f", str(config_file)]
    return subprocess.run(
        command + args,
        cwd=config_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Check the run failed with a single ``error:`` line on stderr and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in error_lines[0]
    return error_lines[0]


@contextmanager
def fixture_lab(fixture_files: dict[str, Path], prefix: str, extra_config: dict[str, Any] | None = None):
    """Start a lab seeded with the real fixture through ``invoke lab.up``; yield (Lab, config, config_dir).

    The lab and its config folder are purged on exit.
    """
    from checkpoint.lab.lab import Lab
    from tests.conftest import FIXTURE_ADMIN_PASSWORD, make_shared_tmpdir

    state_dir = make_shared_tmpdir(f"{prefix}-")
    config_dir = make_shared_tmpdir(f"{prefix}-config-")
    config = {"lab": {"state_dir": str(state_dir / "lab")}, **(extra_config or {})}
    try:
        up = run_invoke(
            ["lab.up", "--from-dump", str(fixture_files["dump"]), "--documents", str(fixture_files["documents"])],
            config, config_dir, env={"CHECKPOINT_LAB_ADMIN_PASSWORD": FIXTURE_ADMIN_PASSWORD},
        )
        assert up.returncode == 0, up.stdout + up.stderr
        lab = Lab(state_dir / "lab")
        lab.cluster.start()
        yield lab, config, config_dir
    finally:
        run_invoke(["lab.down", "--purge"], config, config_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(config_dir, ignore_errors=True)
