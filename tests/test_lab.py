"""lab.up and lab.down with generated data: idempotent, and stopping what they start."""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from checkpoint.lab.lab import Lab
from tests.cli_helpers import assert_one_line_error, run_invoke
from tests.conftest import make_shared_tmpdir


@pytest.fixture
def lab_config():
    folder = make_shared_tmpdir("checkpoint-lab-")
    yield folder, {"lab": {"state_dir": str(folder / "lab")}}
    run_invoke(["lab.down", "--purge"], {"lab": {"state_dir": str(folder / "lab")}}, folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_lab_up_twice_then_down(lab_config):
    folder, config = lab_config

    first = run_invoke(["lab.up", "--json"], config, folder)
    second = run_invoke(["lab.up", "--json"], config, folder)
    state = json.loads((folder / "lab" / "lab.json").read_text())
    answered = requests.get(state["sandbox_url"] + "/", timeout=10)
    down = run_invoke(["lab.down", "--json"], config, folder)

    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["totals"]["changed"] == 6
    assert second.returncode == 0
    assert json.loads(second.stdout)["totals"] == {"ok": 6, "changed": 0, "failed": 0, "skipped": 0}
    # The sandbox database is empty until the first refresh, so the stand-in returns 503.
    assert answered.status_code == 503
    assert down.returncode == 0
    assert json.loads(down.stdout)["totals"]["changed"] == 2
    assert not Lab(folder / "lab").cluster.is_running()
    with pytest.raises(requests.ConnectionError):
        requests.get(state["sandbox_url"] + "/", timeout=10)


def test_lab_secrets_file_is_private(lab_config):
    folder, config = lab_config

    run_invoke(["lab.up"], config, folder)
    secrets_file = folder / "lab" / "sandbox-secrets.env"

    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert "DOLIBARR_ADMIN_PASSWORD=" in secrets_file.read_text()


def test_lab_up_missing_dump(lab_config):
    folder, config = lab_config

    result = run_invoke(["lab.up", "--from-dump", str(folder / "absent.dump")], config, folder)

    assert_one_line_error(result, "absent.dump not found")


def test_lab_down_purge_removes_state(lab_config):
    folder, config = lab_config
    run_invoke(["lab.up"], config, folder)

    result = run_invoke(["lab.down", "--purge"], config, folder)

    assert result.returncode == 0
    assert not (folder / "lab").exists()


def test_reset_on_generated_lab(lab_config):
    # The README's main job: lab.up with generated data, then reset --yes.
    folder, config = lab_config
    up = run_invoke(["lab.up"], config, folder)

    reset = run_invoke(["reset", "--yes", "--json"], config, folder)
    document = json.loads(reset.stdout)

    assert up.returncode == 0, up.stdout + up.stderr
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert document["armed"] is True
    assert document["reason"] == "armed"


def test_lab_up_other_dump_rejected(lab_config, fixture_files):
    folder, config = lab_config
    run_invoke(["lab.up"], config, folder)

    result = run_invoke(["lab.up", "--from-dump", str(fixture_files["dump"])], config, folder)
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed")]

    assert result.returncode != 0
    assert len(failed) == 1
    assert "was seeded from generated data" in failed[0]
    assert "lab.down --purge" in failed[0]


def test_lab_up_documents_not_tarball(lab_config):
    folder, config = lab_config
    not_tarball = folder / "hostname"
    not_tarball.write_text("x\n")

    result = run_invoke(["lab.up", "--documents", str(not_tarball)], config, folder)

    assert_one_line_error(result, "is not a tar archive")


def test_lab_down_with_broken_state_file(lab_config):
    folder, config = lab_config
    run_invoke(["lab.up"], config, folder)
    (folder / "lab" / "lab.json").write_text("{broken")

    down = run_invoke(["lab.down"], config, folder)
    up = run_invoke(["lab.up"], config, folder)

    assert down.returncode == 0, down.stdout + down.stderr
    assert up.returncode == 0, up.stdout + up.stderr
    assert json.loads((folder / "lab" / "lab.json").read_text())["sandbox_url"].startswith("http://127.0.0.1:")


def test_lab_postgres_restart_keeps_port(lab_config):
    folder, config = lab_config
    run_invoke(["lab.up"], config, folder)
    lab = Lab(folder / "lab")
    lab.cluster.start()
    port = lab.cluster.port
    lab.cluster.stop()

    run_invoke(["lab.up"], config, folder)
    restarted = Lab(folder / "lab")
    restarted.cluster.start()

    assert restarted.cluster.port == port
