"""A throwaway OpenSSH server on loopback, for tests that need a real SSH peer.

Each ``SshServer`` runs Debian's ``/usr/sbin/sshd -D -e -f CONFIG`` on 127.0.0.1
with a free port, its own ed25519 host key, and an ``authorized_keys`` file that
admits one throwaway client key. Only key authentication is allowed, root
included (tests run as root), and PAM is off so no system login setup is needed.

``SshClientFiles`` contains what a client needs: the private key, an ssh_config file
and a known_hosts file, all inside a temporary folder, so no test reads or writes
the real ``~/.ssh``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from checkpoint.lab.pgcluster import free_port, wait_for

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
SSH_KEYSCAN = "ssh-keyscan"

# sshd chroots its unprivileged child here before authentication and refuses to
# start when the folder is missing (Debian creates it at boot, containers often lack it).
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


def generate_key(path: Path, comment: str) -> Path:
    """Write a new ed25519 key pair without a passphrase to ``path`` and ``path.pub``."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class SshServer:
    """One sshd whose configuration, host key, log and authorized keys live under ``root``."""

    root: Path
    authorized_public_key: Path
    allow_tcp_forwarding: bool = False
    session_path: str = ""
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def config_file(self) -> Path:
        return self.root / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def log_file(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_pattern(self) -> str:
        """The host name that known_hosts and paramiko use for this server."""
        return f"[127.0.0.1]:{self.port}"

    def start(self) -> SshServer:
        self.root.mkdir(parents=True, exist_ok=True)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        if not self.host_key.exists():
            generate_key(self.host_key, "test host key")
        (self.root / "authorized_keys").write_text(self.authorized_public_key.read_text())
        self.port = self.port or free_port()
        self.config_file.write_text(self._config_text())

        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._accepts_connections, START_TIMEOUT_SECONDS, f"sshd on 127.0.0.1:{self.port}")
        return self

    def stop(self) -> None:
        """Stop the listener and every session it still serves."""
        if self.process is None:
            return
        for pid in self.session_pids():
            _kill(pid, signal.SIGKILL)
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def session_pids(self) -> list[int]:
        """Return the pids of the sshd processes that serve connections (not the listener).

        The commands those sessions run are left out: killing only these pids is what a
        dropped network connection looks like to the commands.
        """
        if self.process is None:
            return []
        return [pid for pid in _descendants(self.process.pid) if _executable(pid) == SSHD]

    def drop_connections(self) -> list[int]:
        """Kill every per-connection sshd process with SIGKILL, as a lost network would end them."""
        pids = self.session_pids()
        for pid in pids:
            _kill(pid, signal.SIGKILL)
        return pids

    def scan_host_key(self) -> str:
        """Return this server's known_hosts line, as ``ssh-keyscan`` prints it."""
        result = subprocess.run(
            [SSH_KEYSCAN, "-t", "ed25519", "-p", str(self.port), "127.0.0.1"],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def _accepts_connections(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"sshd exited with code {self.process.returncode}; see {self.log_file}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                return connection.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def _config_text(self) -> str:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The temporary folders of tests are not owned the way StrictModes requires.
            "StrictModes no",
            f"AllowTcpForwarding {'yes' if self.allow_tcp_forwarding else 'no'}",
            "X11Forwarding no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
        ]
        if self.session_path:
            lines.append(f"SetEnv PATH={self.session_path}")
        return "\n".join(lines) + "\n"


@dataclass
class SshClientFiles:
    """A client key, an ssh_config file and a known_hosts file in one temporary folder."""

    root: Path

    @property
    def identity_file(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.root / "id_ed25519.pub"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def create(self) -> SshClientFiles:
        self.root.mkdir(parents=True, exist_ok=True)
        generate_key(self.identity_file, "test client key")
        self.ssh_config.write_text("")
        self.known_hosts.write_text("")
        return self

    def trust(self, server: SshServer) -> None:
        """Append the server's current host key to known_hosts."""
        with self.known_hosts.open("a") as handle:
            handle.write(server.scan_host_key())

    def write_ssh_config(self, text: str) -> None:
        self.ssh_config.write_text(text)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))

    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


def _executable(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
