"""run_lifecycle_script turns the script's phase lines into outcomes, with a stub script."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from checkpoint.exceptions import ConfigError
from checkpoint.lifecycle import describe_destruction, run_lifecycle_script
from checkpoint.outcome import Run, Status, StepFailed
from checkpoint.settings import LifecycleSettings


def lifecycle_with_script(tmp_path: Path, body: str) -> LifecycleSettings:
    script = tmp_path / "stub-lifecycle.sh"
    script.write_text("#!/usr/bin/env bash\nset -eu\nlog() { echo \"2026-12-04T00:00:00Z [$1] $2\"; }\n" + textwrap.dedent(body))
    return LifecycleSettings(
        script=script,
        transport="local",
        prod_db_uri="postgresql://reader@127.0.0.1:5432/prod",
        sandbox_db_uri="postgresql://owner@127.0.0.1:5432/sandbox",
        prod_documents_dir=tmp_path / "prod",
        sandbox_documents_dir=tmp_path / "sandbox",
        pgpassfile=tmp_path / "pgpass",
        work_dir=None,
    )


def test_phases_become_outcomes(tmp_path):
    lifecycle = lifecycle_with_script(tmp_path, """
        log preflight start; log preflight "versions fit"; log preflight "done in 0s"
        log restore start; log restore committed; log restore "done in 2s"
        log documents start; log documents "0 files copied"; log documents "done in 0s unchanged"
        log extra "skipped: --db-only"
    """)
    run = Run("refresh")

    run_lifecycle_script(lifecycle, run, db_only=False)

    assert [(o.step, o.status) for o in run.outcomes] == [
        ("preflight", Status.OK),
        ("restore", Status.CHANGED),
        ("documents", Status.OK),
        ("extra", Status.SKIPPED),
    ]
    assert run.outcomes[1].message == "committed"
    assert run.outcomes[3].message == "--db-only"


def test_failure_names_phase_and_exit_code(tmp_path):
    lifecycle = lifecycle_with_script(tmp_path, """
        log preflight start; log preflight "done in 0s"
        log restore start
        echo "2026-12-04T00:00:00Z [restore] failed: objects owned by role bob: table t; reassign them" >&2
        exit 13
    """)
    run = Run("refresh")

    with pytest.raises(StepFailed) as failure:
        run_lifecycle_script(lifecycle, run, db_only=False)

    assert failure.value.outcome.step == "restore"
    assert failure.value.outcome.data["exit_code"] == 13
    assert "owned by role bob" in failure.value.outcome.message
    assert "exit code 13" in failure.value.outcome.message


def test_script_receives_settings_as_environment(tmp_path):
    lifecycle = lifecycle_with_script(tmp_path, """
        log preflight start
        log preflight "$LIFECYCLE_TRANSPORT $PROD_DB_URI $SANDBOX_DOCUMENTS_DIR $PGPASSFILE $*"
        log preflight "done in 0s"
    """)
    run = Run("refresh")

    run_lifecycle_script(lifecycle, run, db_only=True)

    message = run.outcomes[0].message
    assert message.startswith("local postgresql://reader@127.0.0.1:5432/prod")
    assert str(tmp_path / "pgpass") in message
    assert message.endswith("refresh --yes --db-only")


def test_missing_setting_is_config_error(tmp_path):
    lifecycle = replace(lifecycle_with_script(tmp_path, "true\n"), prod_db_uri="")

    with pytest.raises(ConfigError, match="missing checkpoint.lifecycle.prod_db_uri"):
        run_lifecycle_script(lifecycle, Run("refresh"), db_only=False)


def test_describe_destruction_hides_password():
    lifecycle = LifecycleSettings(
        script=Path("x"), transport="local", prod_db_uri="", sandbox_db_uri="postgresql://owner:Hunter2-x@db/sandbox",
        prod_documents_dir=None, sandbox_documents_dir=Path("/srv/documents"), pgpassfile=None, work_dir=None,
    )

    text = describe_destruction(lifecycle, db_only=False)

    assert "Hunter2-x" not in text
    assert "postgresql://owner@db/sandbox" in text
    assert "/srv/documents" in text


def test_sigint_reaches_script_trap(tmp_path):
    """SIGINT to the task is passed to the script, whose trap then reports the interruption."""
    lifecycle = lifecycle_with_script(tmp_path, """
        trap 'echo "2026-12-04T00:00:00Z [restore] failed: interrupted by SIGINT" >&2; exit 130' INT
        log restore start
        sleep 30 & wait $!
    """)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pathlib import Path
        from checkpoint.lifecycle import run_lifecycle_script
        from checkpoint.outcome import Run, StepFailed
        from checkpoint.settings import LifecycleSettings
        lifecycle = LifecycleSettings(script=Path({str(lifecycle.script)!r}), transport="local",
            prod_db_uri="postgresql://r@127.0.0.1/p", sandbox_db_uri="postgresql://o@127.0.0.1/s",
            prod_documents_dir=Path("/tmp"), sandbox_documents_dir=Path("/tmp"), pgpassfile=None, work_dir=None)
        run = Run("refresh", on_outcome=lambda outcome: print(outcome.status.value, outcome.step, flush=True))
        try:
            run_lifecycle_script(lifecycle, run, db_only=False)
        except StepFailed as failure:
            print("failed:", failure.outcome.message, flush=True)
            sys.exit(failure.outcome.data["exit_code"])
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_child_sleep(process.pid)

    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)

    assert process.returncode == 130
    assert "interrupted by SIGINT" in stdout


def wait_for_child_sleep(pid: int, timeout: float = 20) -> None:
    """Poll until a descendant of ``pid`` runs ``sleep``, so the script is inside its phase."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "sleep 30"], capture_output=True, text=True).stdout.split()
        if found:
            return
        time.sleep(0.05)
    raise AssertionError("the stub script never started its phase")
