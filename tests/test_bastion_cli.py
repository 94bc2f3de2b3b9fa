"""reset --yes --bastion through the real command line, a real sshd and the lab."""

from __future__ import annotations

import json
import shutil

import pytest

from checkpoint.lab.lab import PROD_DATABASE, SANDBOX_DATABASE, Lab
from tests.cli_helpers import assert_one_line_error, run_invoke
from tests.conftest import FIXTURE_ADMIN_PASSWORD, make_shared_tmpdir
from tests.db_helpers import table_checksums
from tests.support.sshd import SshClientFiles, SshServer


@pytest.fixture(scope="module")
def bastion_lab(fixture_files):
    root = make_shared_tmpdir("bastion-cli-")
    client = SshClientFiles(root / "client").create()
    server = SshServer(root / "bastion", client.public_key).start()
    client.trust(server)
    lab_dir = root / "lab"
    config = {
        "lab": {"state_dir": str(lab_dir)},
        "bastion": {
            "ssh_config": str(client.ssh_config),
            "known_hosts": str(client.known_hosts),
            "identity_file": str(client.identity_file),
            # The bastion is this machine, so its pgpass file is the lab's own.
            "pgpassfile": str(lab_dir / "postgres" / "pgpass"),
        },
    }
    up = run_invoke(
        ["lab.up", "--from-dump", str(fixture_files["dump"]), "--documents", str(fixture_files["documents"])],
        config, root, env={"CHECKPOINT_LAB_ADMIN_PASSWORD": FIXTURE_ADMIN_PASSWORD},
    )
    assert up.returncode == 0, up.stdout + up.stderr
    lab = Lab(lab_dir)
    lab.cluster.start()
    yield lab, config, root, f"root@127.0.0.1:{server.port}", client, server
    run_invoke(["lab.down", "--purge"], config, root)
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_reset_through_bastion(bastion_lab):
    lab, config, root, target, _, _ = bastion_lab

    result = run_invoke(["reset", "--yes", "--bastion", target, "--json"], config, root)
    document = json.loads(result.stdout)
    steps = [step["step"] for step in document["steps"]]

    assert result.returncode == 0, result.stdout + result.stderr
    assert steps[:3] == ["bastion_preflight", "preflight", "dump"]
    assert "ensure_agent_api_key" in steps
    assert document["armed"] is True
    prod = table_checksums(lab.cluster, PROD_DATABASE)
    sandbox = table_checksums(lab.cluster, SANDBOX_DATABASE)
    assert sandbox["llx_facture"] == prod["llx_facture"]


def test_bastion_unknown_host_key_one_line(bastion_lab):
    _, config, root, target, _, _ = bastion_lab
    untrusting = {**config, "bastion": {**config["bastion"], "known_hosts": str(root / "empty_known_hosts")}}
    (root / "empty_known_hosts").write_text("")

    result = run_invoke(["refresh", "--yes", "--db-only", "--bastion", target], untrusting, root)

    assert_one_line_error(result, "is not in known_hosts", "SHA256:", "ssh-keyscan -p")
