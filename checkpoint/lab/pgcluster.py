"""A throwaway PostgreSQL server started from the machine's own binaries.

The lab and the tests use it: ``initdb`` into a folder, loopback only, a free port,
scram-sha-256 passwords kept in a pgpass file of mode 600. PostgreSQL refuses to run
as root, so when this process is root the server runs as the ``postgres`` system user,
which then owns the data directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from checkpoint.exceptions import LabError
from checkpoint.files import write_private

SUPERUSER = "postgres"
SERVER_USER_WHEN_ROOT = "postgres"
START_TIMEOUT_SECONDS = 30


def find_server_bindir() -> Path:
    """Return the newest ``/usr/lib/postgresql/<major>/bin`` that has ``pg_ctl``."""
    override = os.environ.get("CHECKPOINT_PG_BINDIR")
    if override:
        return Path(override)

    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if not candidates:
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).parent
        raise LabError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/pg_ctl): "
            "install the Debian package postgresql, or set CHECKPOINT_PG_BINDIR"
        )

    def major(path: str) -> int:
        return int(Path(path).parent.parent.name)

    return Path(max(candidates, key=major)).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresCluster:
    """One PostgreSQL server whose data, socket, log and pgpass file live under ``root``."""

    root: Path
    port: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def pgpass_file(self) -> Path:
        return self.root / "pgpass"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    # -- lifecycle ---------------------------------------------------------

    def init(self) -> None:
        """Create the data directory and the superuser, unless it already exists."""
        if (self.data_dir / "PG_VERSION").exists():
            return

        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._hand_over(self.data_dir, self.socket_dir)
        self._ensure_reachable_by_server()

        password = secrets.token_urlsafe(24)
        pwfile = self.root / "initdb-password"
        _write_private(pwfile, password + "\n")
        self._hand_over(pwfile)
        try:
            self._run_as_server(
                [
                    str(find_server_bindir() / "initdb"),
                    "--pgdata", str(self.data_dir),
                    "--username", SUPERUSER,
                    "--auth", "scram-sha-256",
                    "--pwfile", str(pwfile),
                    "--encoding", "UTF8",
                    "--locale", "C",
                ],
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.remember_password(SUPERUSER, password)

    def start(self) -> None:
        """Start the server on loopback and wait until it accepts connections."""
        if self.is_running():
            self.port = int(self.port_file.read_text())
            return

        # The same port as last time, so clients that recorded it (the stand-in,
        # lab.json) still reach the server after a restart.
        if not self.port and self.port_file.exists():
            self.port = int(self.port_file.read_text())
        self.port = self.port or free_port()
        self.log_file.touch()
        self._hand_over(self.log_file)
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.socket_dir}"
            " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run_as_server(
            [
                str(find_server_bindir() / "pg_ctl"),
                "start",
                "--pgdata", str(self.data_dir),
                "--log", str(self.log_file),
                "--options", options,
                "--wait",
                "--timeout", str(START_TIMEOUT_SECONDS),
            ],
            "pg_ctl start",
        )
        self.port_file.write_text(str(self.port))

    def stop(self) -> None:
        if not self.is_running():
            return
        self._run_as_server(
            [str(find_server_bindir() / "pg_ctl"), "stop", "--pgdata", str(self.data_dir),
             "--mode", "fast", "--wait"],
            "pg_ctl stop",
        )

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        result = subprocess.run(
            [str(find_server_bindir() / "pg_ctl"), "status", "--pgdata", str(self.data_dir)],
            capture_output=True,
            **self._as_server_kwargs(),
        )
        return result.returncode == 0

    # -- connections -------------------------------------------------------

    def uri(self, database: str, user: str = SUPERUSER) -> str:
        """Return a connection URI without a password: libpq reads it from the pgpass file."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def client_env(self) -> dict[str, str]:
        """Return environment variables that let libpq clients find the passwords."""
        return {"PGPASSFILE": str(self.pgpass_file), "PGCONNECT_TIMEOUT": "10"}

    def remember_password(self, user: str, password: str) -> None:
        """Add or replace ``user``'s line in the pgpass file, which stays mode 600."""
        lines = []
        if self.pgpass_file.exists():
            prefix = f"*:*:*:{user}:"
            lines = [line for line in self.pgpass_file.read_text().splitlines() if not line.startswith(prefix)]
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        lines.append(f"*:*:*:{user}:{escaped}")
        _write_private(self.pgpass_file, "\n".join(lines) + "\n")

    def psql(self, sql: str, database: str = "postgres", user: str = SUPERUSER) -> str:
        """Run ``sql`` with psql and return its unaligned, tuples-only output."""
        env = {**os.environ, **self.client_env()}
        result = subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.uri(database, user)],
            input=sql,
            capture_output=True,
            text=True,
            env=env,
        )
        if result.returncode != 0:
            raise LabError(f"psql on database {database} as {user} failed: {result.stderr.strip()}")
        return result.stdout

    def create_role(self, role: str, *, createdb: bool = False) -> None:
        """Create a login role with a fresh password, kept only in the pgpass file."""
        password = secrets.token_urlsafe(24)
        attributes = "LOGIN CREATEDB" if createdb else "LOGIN"
        # The password travels on psql's stdin, never on a command line.
        self.psql(
            f"SELECT format('CREATE ROLE %I', '{role}')"
            f" WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \\gexec\n"
            f"ALTER ROLE \"{role}\" {attributes} PASSWORD '{password}';\n"
        )
        self.remember_password(role, password)

    def create_database(self, database: str, owner: str) -> None:
        self.psql(
            f"SELECT format('CREATE DATABASE %I OWNER %I', '{database}', '{owner}')"
            f" WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{database}') \\gexec"
        )

    # -- running as the server user ------------------------------------------

    def _as_server_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}

    def _run_as_server(self, command: list[str], what: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, **self._as_server_kwargs())
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise LabError(f"{what} failed for {self.data_dir}: {' | '.join(detail)}; see {self.log_file}")

    def _hand_over(self, *paths: Path) -> None:
        """Give ``paths`` to the server user when this process runs as root."""
        if os.geteuid() != 0:
            return
        entry = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _ensure_reachable_by_server(self) -> None:
        """Fail early when a parent folder keeps the server user out of its data directory."""
        if os.geteuid() != 0:
            return
        for parent in self.data_dir.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                raise LabError(
                    f"folder {parent} is not searchable by user {SERVER_USER_WHEN_ROOT}, which runs the lab's "
                    f"PostgreSQL server: put the lab state under a folder with mode o+x, or chmod o+x {parent}"
                )


def _write_private(path: Path, text: str) -> None:
    write_private(path, text.encode())


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it returns true, or raise LabError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
