"""Run the lifecycle script on a bastion over real SSH: two throwaway sshd on loopback.

One sshd is the bastion (this machine), the other the jump host. A stand-in script
that prints phase lines tests the transport. The real ``sandbox-lifecycle.sh`` tests
a real refresh, a dropped connection during its restore, and that no secret leaks. The client files (key, ssh_config, known_hosts) live in a temporary folder
and HOME points at another one, so the real ``~/.ssh`` is never read or written.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from checkpoint.bastion import (
    AuthenticationFailed,
    BastionToolsMissing,
    BastionSettings,
    HostKeyRejected,
    HostUnreachable,
    bastion_connection,
    check_tools,
    parse_target,
    run_lifecycle_on_bastion,
)
from checkpoint.bastion.target import BastionTarget, load_bastion_settings
from checkpoint.exceptions import ConfigError
from checkpoint.lab.pgcluster import free_port, wait_for
from checkpoint.outcome import Run, Status, StepFailed
from checkpoint.settings import LifecycleSettings
from tests.conftest import make_shared_tmpdir
from tests.lifecycle_helpers import SCRIPT, connect, wait_until_restore_session_gone
from tests.support.sshd import SshClientFiles, SshServer, generate_key
from tests.test_lifecycle_script import (  # noqa: F401  (pytest fixtures)
    GATE_LOCK_KEY,
    GATE_SQL,
    PROD_ROLE,
    lifecycle_server,
    prod_documents_source,
    setup,
)

FAKE_SECRET = "FAKE-SECRET-7c1e5b2a9d"
WAIT_SECONDS = 60

# A stand-in for sandbox-lifecycle.sh. It keeps its state in SANDBOX_DOCUMENTS_DIR:
# `hold` makes it wait in the dump phase until the file goes away, `fail` makes
# the dump fail, and its TERM trap writes `restored`, as the real script's restore would.
STANDIN_SCRIPT = r"""#!/usr/bin/env bash
set -eu
state="$SANDBOX_DOCUMENTS_DIR"
log() { printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2"; }

log preflight start
stat -c '%n %a' "$(dirname "$0")" "$(dirname "$0")/environment" >"$state/modes"
log preflight "done in 0s"
printf '%s\n' "$@" >"$state/arguments"
env >"$state/environment"

log dump start
if [[ -e "$state/hold" ]]; then
  trap 'echo restored >"$state/restored"; log dump "failed: interrupted by SIGTERM" >&2; exit 143' TERM
  touch "$state/holding"
  while [[ -e "$state/hold" ]]; do sleep 0.05; done
fi
if [[ -e "$state/fail" ]]; then
  log dump "failed: no space left on device" >&2
  exit 11
fi
log dump "done in 0s"
log documents "skipped: --db-only"
"""


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_root():
    folder = make_shared_tmpdir("bastion-test-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def client_key(ssh_root):
    return SshClientFiles(ssh_root / "client").create()


@pytest.fixture(scope="module")
def bastion_server(ssh_root, client_key):
    server = SshServer(ssh_root / "bastion", client_key.public_key).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jump_server(ssh_root, client_key):
    server = SshServer(ssh_root / "jump", client_key.public_key, allow_tcp_forwarding=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bare_server(ssh_root, client_key):
    """A bastion whose sessions get a PATH with bash and coreutils, but no PostgreSQL client or rsync."""
    tools = ssh_root / "bare-bin"
    tools.mkdir()
    for name in ("bash", "setsid", "tail", "mktemp", "head", "dirname", "rm", "cat"):
        (tools / name).symlink_to(shutil.which(name))
    server = SshServer(ssh_root / "bare", client_key.public_key, session_path=str(tools)).start()
    yield server
    server.stop()


@pytest.fixture
def client(client_key, tmp_path, monkeypatch):
    """Empty ssh_config and known_hosts for one test, and a HOME without ``.ssh``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    client_key.write_ssh_config("")
    client_key.known_hosts.write_text("")
    return client_key


@pytest.fixture
def trusted(client, bastion_server, jump_server):
    client.trust(bastion_server)
    client.trust(jump_server)
    return client


@pytest.fixture
def standin(tmp_path):
    """The stand-in script, its state folder and an empty parent for the remote work folders."""
    folder = tmp_path / "standin"
    (folder / "state").mkdir(parents=True)
    (folder / "work-parent").mkdir()
    script = folder / "sandbox-lifecycle.sh"
    script.write_text(STANDIN_SCRIPT)
    return folder


def standin_lifecycle(standin: Path) -> LifecycleSettings:
    return LifecycleSettings(
        script=standin / "sandbox-lifecycle.sh",
        transport="local",
        prod_db_uri="postgresql://prod_owner@127.0.0.1:5432/prod",
        sandbox_db_uri="postgresql://sandbox_owner@127.0.0.1:5432/sandbox",
        prod_documents_dir=Path("/nonexistent/prod-documents"),
        sandbox_documents_dir=standin / "state",
        pgpassfile=Path("/local/only/pgpass"),
        work_dir=None,
    )


def bastion_settings(client: SshClientFiles, server: SshServer, **overrides) -> BastionSettings:
    values = {
        "target": BastionTarget("127.0.0.1", "root", server.port),
        "ssh_config": client.ssh_config,
        "known_hosts": client.known_hosts,
        "identity_file": client.identity_file,
        **overrides,
    }
    return BastionSettings(**values)


def accepted_logins(server: SshServer) -> int:
    return server.log_file.read_text().count("Accepted publickey")


def host_fingerprint(server: SshServer) -> str:
    output = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{server.host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout
    return output.split()[1]


def run_in_thread(target) -> tuple[threading.Thread, dict]:
    """Run ``target`` in a thread; the dict receives its result or exception."""
    result: dict = {}

    def body():
        try:
            result["value"] = target()
        except BaseException as error:  # noqa: BLE001  (handed to the test)
            result["error"] = error

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, result


# -- target parsing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bastion", BastionTarget("bastion")),
        ("admin@bastion.example", BastionTarget("bastion.example", "admin")),
        ("admin@bastion.example:2222", BastionTarget("bastion.example", "admin", 2222)),
        ("10.0.0.5:22", BastionTarget("10.0.0.5", None, 22)),
        ("[::1]:2222", BastionTarget("::1", None, 2222)),
        ("ops@[fe80::1]", BastionTarget("fe80::1", "ops")),
        ("::1", BastionTarget("::1")),
    ],
)
def test_parse_target_accepts(value, expected):
    assert parse_target(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "host name ''"),
        ("admin@", "host name ''"),
        ("@bastion", "user name ''"),
        ("a b@bastion", "user name 'a b'"),
        ("bastion:0", "port '0'"),
        ("bastion:70000", "port '70000'"),
        ("bastion:ssh", "port 'ssh'"),
        ("[::1", "unbalanced brackets"),
        ("[bastion]:22", "not an IPv6 address"),
        ("bad_host!:22", "host name 'bad_host!'"),
    ],
)
def test_parse_target_rejects(value, fragment):
    with pytest.raises(ConfigError) as raised:
        parse_target(value)
    message = str(raised.value)
    assert f"invalid bastion {value!r}" in message
    assert fragment in message
    assert "\n" not in message


def test_settings_reject_relative_remote_path(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint.bastion.pgpassfile 'pgpass': use an absolute path"):
        load_bastion_settings({"host": "bastion", "pgpassfile": "pgpass"}, tmp_path)


def test_settings_flag_wins_over_host(tmp_path):
    settings = load_bastion_settings({"host": "configured"}, tmp_path, target="ops@flag:2200")
    assert settings.target == BastionTarget("flag", "ops", 2200)


# -- runs through the stand-in ------------------------------------------------------


def test_run_streams_phases_and_exit_code(trusted, bastion_server, standin):
    seen = []
    run = Run("refresh", on_outcome=lambda outcome: seen.append((outcome.step, outcome.status)))
    settings = bastion_settings(trusted, bastion_server, temp_dir=str(standin / "work-parent"))

    returncode = run_lifecycle_on_bastion(standin_lifecycle(standin), settings, run, db_only=True)

    assert returncode == 0
    assert seen == [
        ("bastion_preflight", Status.OK),
        ("preflight", Status.OK),
        ("dump", Status.CHANGED),
        ("documents", Status.SKIPPED),
    ]
    modes = [line.rsplit(" ", 1)[1] for line in (standin / "state" / "modes").read_text().splitlines()]
    assert modes == ["700", "600"]
    assert (standin / "state" / "arguments").read_text().split() == ["refresh", "--yes", "--db-only"]
    assert list((standin / "work-parent").iterdir()) == []


def test_run_passes_only_settings_variables(trusted, bastion_server, standin, monkeypatch):
    monkeypatch.setenv("CHECKPOINT_LOCAL_ONLY", "must-not-travel")
    pgpass = standin / "pgpass-on-bastion"
    pgpass.write_text("*:*:*:*:unused\n")
    pgpass.chmod(0o600)
    settings = bastion_settings(trusted, bastion_server, pgpassfile=str(pgpass))

    run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=True)

    environment = (standin / "state" / "environment").read_text()
    assert f"PGPASSFILE={pgpass}" in environment.splitlines()
    assert "SANDBOX_DB_URI=postgresql://sandbox_owner@127.0.0.1:5432/sandbox" in environment.splitlines()
    assert "must-not-travel" not in environment
    assert "/local/only/pgpass" not in environment


def test_run_failure_records_failed_phase(trusted, bastion_server, standin):
    (standin / "state" / "fail").touch()
    run = Run("refresh")
    settings = bastion_settings(trusted, bastion_server, temp_dir=str(standin / "work-parent"))

    with pytest.raises(StepFailed) as raised:
        run_lifecycle_on_bastion(standin_lifecycle(standin), settings, run, db_only=True)

    assert raised.value.outcome.step == "dump"
    assert raised.value.outcome.data["exit_code"] == 11
    assert "no space left on device" in raised.value.outcome.message
    assert list((standin / "work-parent").iterdir()) == []


def test_uri_with_password_rejected_before_connecting(trusted, bastion_server, standin):
    lifecycle = standin_lifecycle(standin)
    lifecycle = LifecycleSettings(**{**lifecycle.__dict__, "prod_db_uri": f"postgresql://u:{FAKE_SECRET}@db/prod"})

    with pytest.raises(ConfigError) as raised:
        run_lifecycle_on_bastion(lifecycle, bastion_settings(trusted, bastion_server), Run("refresh"), db_only=True)

    assert "checkpoint.lifecycle.prod_db_uri" in str(raised.value)
    assert FAKE_SECRET not in str(raised.value)


# -- jump hosts ---------------------------------------------------------------------


def jump_config(client: SshClientFiles, bastion: SshServer, jump: SshServer, bastion_extra: str = "") -> str:
    return (
        f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n  User root\n"
        f"  IdentityFile {client.identity_file}\n{bastion_extra}"
        f"Host jump\n  HostName 127.0.0.1\n  Port {jump.port}\n  User root\n  IdentityFile {client.identity_file}\n"
        "Host *\n  ProxyJump none\n"
    )


def test_proxyjump_from_ssh_config(trusted, bastion_server, jump_server, standin):
    trusted.write_ssh_config(jump_config(trusted, bastion_server, jump_server, "  ProxyJump jump\n"))
    settings = bastion_settings(trusted, bastion_server, target=BastionTarget("bastion"), identity_file=None)
    jump_logins = accepted_logins(jump_server)

    returncode = run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=True)

    assert returncode == 0
    assert accepted_logins(jump_server) == jump_logins + 1


def test_proxyjump_none_default_honoured(trusted, bastion_server, jump_server, standin):
    trusted.write_ssh_config(jump_config(trusted, bastion_server, jump_server))
    settings = bastion_settings(trusted, bastion_server, target=BastionTarget("bastion"), identity_file=None)
    jump_logins = accepted_logins(jump_server)

    returncode = run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=True)

    assert returncode == 0
    assert accepted_logins(jump_server) == jump_logins


def test_gateway_setting_wins_over_ssh_config(trusted, bastion_server, jump_server, standin):
    trusted.write_ssh_config(jump_config(trusted, bastion_server, jump_server))
    settings = bastion_settings(
        trusted, bastion_server, target=BastionTarget("bastion"), identity_file=None, gateway="jump"
    )
    jump_logins = accepted_logins(jump_server)

    returncode = run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=True)

    assert returncode == 0
    assert accepted_logins(jump_server) == jump_logins + 1


def test_gateway_none_skips_ssh_config_jump(trusted, bastion_server, jump_server):
    trusted.write_ssh_config(jump_config(trusted, bastion_server, jump_server, "  ProxyJump jump\n"))
    settings = bastion_settings(
        trusted, bastion_server, target=BastionTarget("bastion"), identity_file=None, gateway="none"
    )
    jump_logins = accepted_logins(jump_server)

    with bastion_connection(settings) as connection:
        assert connection.run("echo connected", hide=True, in_stream=False).stdout == "connected\n"

    assert accepted_logins(jump_server) == jump_logins


# -- host keys ----------------------------------------------------------------------


def test_unknown_host_key_rejected_with_fix(client, bastion_server):
    settings = bastion_settings(client, bastion_server)

    with pytest.raises(HostKeyRejected) as raised, bastion_connection(settings):
        pass

    message = str(raised.value)
    fix = message.split("then run ", 1)[1]
    assert host_fingerprint(bastion_server) in message
    assert f"[127.0.0.1]:{bastion_server.port} is not in known_hosts" in message
    assert fix == f"ssh-keyscan -p {bastion_server.port} -t ssh-ed25519 127.0.0.1 >> {client.known_hosts}"

    subprocess.run(["bash", "-c", fix], check=True, capture_output=True)
    with bastion_connection(settings) as connection:
        assert connection.is_connected


def test_changed_host_key_rejected_with_fix(client, bastion_server, tmp_path):
    impostor = generate_key(tmp_path / "impostor", "impostor")
    public = Path(f"{impostor}.pub").read_text().split()
    client.known_hosts.write_text(f"{bastion_server.host_pattern} {public[0]} {public[1]}\n")
    settings = bastion_settings(client, bastion_server)

    with pytest.raises(HostKeyRejected) as raised, bastion_connection(settings):
        pass

    message = str(raised.value)
    assert "CHANGED" in message
    assert host_fingerprint(bastion_server) in message
    assert f"has {host_fingerprint_of(Path(f'{impostor}.pub'))}" in message
    assert f"ssh-keygen -R '{bastion_server.host_pattern}' -f {client.known_hosts}" in message
    assert f"ssh-keyscan -p {bastion_server.port} -t ssh-ed25519 127.0.0.1 >> {client.known_hosts}" in message


def host_fingerprint_of(public_key: Path) -> str:
    output = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)], capture_output=True, text=True, check=True
    ).stdout
    return output.split()[1]


def test_unknown_jump_host_key_rejected(client, bastion_server, jump_server):
    client.trust(bastion_server)
    settings = bastion_settings(client, bastion_server, gateway=f"root@127.0.0.1:{jump_server.port}")

    with pytest.raises(HostKeyRejected) as raised, bastion_connection(settings):
        pass

    assert f"[127.0.0.1]:{jump_server.port} is not in known_hosts" in str(raised.value)
    assert host_fingerprint(jump_server) in str(raised.value)


def test_user_known_hosts_never_written(client, bastion_server, tmp_path):
    settings = bastion_settings(client, bastion_server)

    with pytest.raises(HostKeyRejected), bastion_connection(settings):
        pass

    assert client.known_hosts.read_text() == ""
    assert not (tmp_path / "home" / ".ssh").exists()


def test_unknown_key_file_fails_authentication(trusted, bastion_server, tmp_path):
    stranger = generate_key(tmp_path / "stranger", "stranger")
    settings = bastion_settings(trusted, bastion_server, identity_file=stranger)

    with pytest.raises(AuthenticationFailed) as raised, bastion_connection(settings):
        pass

    assert f"authentication failed for bastion root@127.0.0.1:{bastion_server.port}" in str(raised.value)
    assert f"key files {stranger}" in str(raised.value)


def test_closed_port_reported_unreachable(client):
    port = free_port()
    settings = BastionSettings(target=BastionTarget("127.0.0.1", "root", port), ssh_config=client.ssh_config)

    with pytest.raises(HostUnreachable) as raised, bastion_connection(settings):
        pass

    assert f"cannot connect to bastion root@127.0.0.1:{port}" in str(raised.value)
    assert "\n" not in str(raised.value)


# -- preflight ---------------------------------------------------------------------


def test_missing_tools_listed_in_one_error(client, bare_server, standin):
    client.trust(bare_server)
    settings = bastion_settings(client, bare_server)

    with pytest.raises(StepFailed) as raised:
        run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=False)

    message = raised.value.outcome.message
    assert raised.value.outcome.step == "bastion_preflight"
    assert "psql, pg_dump, pg_restore, rsync, flock not found on PATH" in message
    assert "kubectl" not in message
    assert "bash not found" not in message
    assert not (standin / "state" / "arguments").exists()


def test_insecure_pgpass_reported(trusted, bastion_server, standin, tmp_path):
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("*:*:*:*:x\n")
    pgpass.chmod(0o644)
    settings = bastion_settings(trusted, bastion_server, pgpassfile=str(pgpass))

    with pytest.raises(StepFailed) as raised:
        run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=True)

    assert f"pgpass file {pgpass} has mode 644" in raised.value.outcome.message


# -- dropped connections ----------------------------------------------------------------


def test_dropped_connection_stops_script_and_cleans_up(trusted, bastion_server, standin):
    state = standin / "state"
    (state / "hold").touch()
    settings = bastion_settings(trusted, bastion_server, temp_dir=str(standin / "work-parent"))
    run = Run("refresh")

    thread, result = run_in_thread(
        lambda: run_lifecycle_on_bastion(standin_lifecycle(standin), settings, run, db_only=True)
    )
    wait_for(lambda: (state / "holding").exists(), WAIT_SECONDS, "the stand-in to hold in the dump phase")
    assert bastion_server.drop_connections()
    thread.join(WAIT_SECONDS)

    wait_for(lambda: (state / "restored").exists(), WAIT_SECONDS, "the stand-in's TERM trap")
    wait_for(lambda: not any((standin / "work-parent").iterdir()), WAIT_SECONDS, "the work folder removal")
    assert isinstance(result.get("error"), StepFailed)
    assert result["error"].outcome.step == "dump"
    assert "dropped" in result["error"].outcome.message
    assert (state / "hold").exists()


# -- the real lifecycle script ---------------------------------------------------------


def real_lifecycle(lifecycle_setup) -> LifecycleSettings:
    return LifecycleSettings(
        script=SCRIPT,
        transport="local",
        prod_db_uri=lifecycle_setup.prod_uri,
        sandbox_db_uri=lifecycle_setup.sandbox_uri,
        prod_documents_dir=lifecycle_setup.prod_documents,
        sandbox_documents_dir=lifecycle_setup.sandbox_documents,
        pgpassfile=None,
        work_dir=None,
    )


def bastion_pgpass(lifecycle_setup, folder: Path) -> Path:
    """Copy the cluster's pgpass file and add a line with the fake secret that no server uses."""
    pgpass = folder / "bastion-pgpass"
    text = lifecycle_setup.cluster.pgpass_file.read_text()
    pgpass.write_text(f"{text}127.0.0.1:1:nodb:nobody:{FAKE_SECRET}\n")
    pgpass.chmod(0o600)
    return pgpass


def sample_process_list(stop: threading.Event, samples: list[str]) -> None:
    while not stop.is_set():
        samples.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout)


def test_real_refresh_leaks_no_secret(trusted, bastion_server, setup, caplog):  # noqa: F811
    caplog.set_level("DEBUG")
    pgpass = bastion_pgpass(setup, setup.work_parent.parent)
    secrets = [FAKE_SECRET] + [line.rsplit(":", 1)[1] for line in setup.cluster.pgpass_file.read_text().split()]
    settings = bastion_settings(trusted, bastion_server, pgpassfile=str(pgpass), work_dir=str(setup.work_parent))
    run = Run("refresh")
    samples: list[str] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_process_list, args=(stop, samples), daemon=True)

    sampler.start()
    try:
        returncode = run_lifecycle_on_bastion(real_lifecycle(setup), settings, run, db_only=False)
    finally:
        stop.set()
        sampler.join(WAIT_SECONDS)

    assert returncode == 0
    assert [outcome.step for outcome in run.outcomes] == [
        "bastion_preflight", "preflight", "dump", "verify-dump", "restore", "verify", "documents"
    ]
    assert setup.sandbox_state().tables == setup.prod_state().tables
    assert any("run-on-bastion.sh refresh --yes" in sample for sample in samples)
    recorded = "\n".join(outcome.message for outcome in run.outcomes)
    logs = caplog.text + bastion_server.log_file.read_text()
    for secret in secrets:
        assert not any(secret in sample for sample in samples)
        assert secret not in recorded
        assert secret not in logs


def test_real_refresh_dropped_keeps_old_sandbox(trusted, bastion_server, setup):  # noqa: F811
    setup.cluster.psql(GATE_SQL, setup.prod_database, PROD_ROLE)
    pgpass = bastion_pgpass(setup, setup.work_parent.parent)
    remote_parent = setup.work_parent.parent / "remote-work"
    remote_parent.mkdir()
    settings = bastion_settings(
        trusted, bastion_server, pgpassfile=str(pgpass), work_dir=str(setup.work_parent), temp_dir=str(remote_parent)
    )
    sandbox_before = setup.sandbox_state()
    run = Run("refresh")

    with connect(setup.cluster, setup.sandbox_database) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))
        thread, result = run_in_thread(lambda: run_lifecycle_on_bastion(real_lifecycle(setup), settings, run, db_only=True))
        wait_for(setup.restore_is_waiting_on_advisory_lock, 120, "the restore to wait on the gate")
        assert bastion_server.drop_connections()
        thread.join(WAIT_SECONDS)
        # The script stops its psql at once, but the server ends that backend only
        # when its lock wait ends. So the gate opens before the session count is checked.
        wait_for(lambda: not any(remote_parent.iterdir()), WAIT_SECONDS, "the work folder removal")
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_KEY,))

    wait_until_restore_session_gone(setup)
    assert isinstance(result.get("error"), StepFailed)
    assert result["error"].outcome.step == "restore"
    assert setup.sandbox_state() == sandbox_before
    assert list(setup.work_parent.iterdir()) == []


def test_local_sigint_stops_remote_script(trusted, bastion_server, standin):
    state = standin / "state"
    (state / "hold").touch()
    settings = bastion_settings(trusted, bastion_server, temp_dir=str(standin / "work-parent"))

    def interrupt_when_holding():
        wait_for(lambda: (state / "holding").exists(), WAIT_SECONDS, "the stand-in to hold in the dump phase")
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_holding, daemon=True)
    interrupter.start()
    with pytest.raises(StepFailed) as raised:
        run_lifecycle_on_bastion(standin_lifecycle(standin), settings, Run("refresh"), db_only=True)
    interrupter.join(WAIT_SECONDS)

    assert raised.value.outcome.step == "dump"
    assert raised.value.outcome.data["exit_code"] == 143
    assert "interrupted by SIGTERM" in raised.value.outcome.message
    assert (state / "restored").exists()
    assert list((standin / "work-parent").iterdir()) == []


def test_missing_kubectl_named_for_kubectl_transport(client, bare_server):
    client.trust(bare_server)
    settings = bastion_settings(client, bare_server)

    with bastion_connection(settings) as connection:
        with pytest.raises(BastionToolsMissing) as raised:
            check_tools(connection, "kubectl", db_only=True)

    message = str(raised.value)
    assert "kubectl" in message.split("not found on PATH")[0]
    assert "Debian: kubernetes-client" in message
