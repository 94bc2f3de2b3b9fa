"""Helpers for the tests of ops/sandbox/sandbox-lifecycle.sh: fingerprints of a
database and of a documents tree, and the parser of the script's log lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from checkpoint.lab.pgcluster import PostgresCluster, wait_for
from checkpoint.lifecycle import restore_default_signals
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "ops" / "sandbox" / "sandbox-lifecycle.sh"
PHASE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[([a-z-]+)\] (.*)$")
REFRESH_PHASES = ["preflight", "dump", "verify-dump", "restore", "verify", "documents"]
RESTORE_APPLICATION = "sandbox-lifecycle restore"

USER_TABLES_SQL = """
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
ORDER BY 1
"""

USER_OBJECTS_SQL = """
SELECT pg_catalog.format('%s %I.%I owner %s', c.relkind, n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
UNION ALL
SELECT pg_catalog.format('function %I.%I owner %s', n.nspname, p.proname, pg_catalog.pg_get_userbyid(p.proowner))
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
ORDER BY 1
"""


def connect(cluster: PostgresCluster, database: str) -> psycopg.Connection:
    """Connect as the superuser; the password comes from the cluster's pgpass file."""
    return psycopg.connect(cluster.uri(database), passfile=str(cluster.pgpass_file), autocommit=True)


def table_fingerprints(cluster: PostgresCluster, database: str) -> dict[str, tuple[int, str]]:
    """Return each user table's row count and the md5 of its rows in text order."""
    with connect(cluster, database) as connection:
        tables = [row[0] for row in connection.execute(USER_TABLES_SQL)]
        fingerprints = {}
        for table in tables:
            count, digest = connection.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()
            fingerprints[table] = (count, digest)
    return fingerprints


def object_list(cluster: PostgresCluster, database: str) -> list[str]:
    """Return the relations and functions of the user schemas with their owners."""
    with connect(cluster, database) as connection:
        return [row[0] for row in connection.execute(USER_OBJECTS_SQL)]


@dataclass(frozen=True)
class DatabaseState:
    tables: dict[str, tuple[int, str]]
    objects: list[str]

    @classmethod
    def read(cls, cluster: PostgresCluster, database: str) -> "DatabaseState":
        return cls(table_fingerprints(cluster, database), object_list(cluster, database))


def documents_snapshot(root: Path) -> dict[str, tuple]:
    """Return every entry under ``root`` with its type, mode, mtime in ns and content."""
    snapshot = {}
    for folder, folders, files in os.walk(root):
        for name in ["."] + folders + files:
            path = Path(folder) / name
            relative = str(path.relative_to(root))
            if relative in snapshot:
                continue
            info = path.lstat()
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = path.read_bytes()
            else:
                content = None
            snapshot[relative] = (info.st_mode, info.st_mtime_ns, content)
    return snapshot


def parse_phase_lines(stdout: str) -> list[tuple[str, str]]:
    """Return (phase, text) for each stdout line; a line of another shape fails the test."""
    lines = []
    for line in stdout.splitlines():
        match = PHASE_LINE.match(line)
        assert match, f"stdout line not in the '<time> [<phase>] <text>' shape: {line!r}"
        lines.append((match.group(1), match.group(2)))
    return lines


@dataclass
class LifecycleSetup:
    """One prod database, one sandbox database and their documents folders."""

    cluster: PostgresCluster
    prod_database: str
    sandbox_database: str
    prod_role: str
    sandbox_role: str
    prod_documents: Path
    sandbox_documents: Path
    work_parent: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def prod_uri(self) -> str:
        return self.cluster.uri(self.prod_database, self.prod_role)

    @property
    def sandbox_uri(self) -> str:
        return self.cluster.uri(self.sandbox_database, self.sandbox_role)

    def env(self, **overrides: str | None) -> dict[str, str]:
        """Return the script's environment; an override of None removes the variable."""
        env = {
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.work_parent),
            **self.cluster.client_env(),
            "LIFECYCLE_TRANSPORT": "local",
            "PROD_DB_URI": self.prod_uri,
            "SANDBOX_DB_URI": self.sandbox_uri,
            "PROD_DOCUMENTS_DIR": str(self.prod_documents),
            "SANDBOX_DOCUMENTS_DIR": str(self.sandbox_documents),
            **self.extra_env,
        }
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def run(self, *arguments: str, **overrides: str | None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), *arguments],
            env=self.env(**overrides),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self, *arguments: str, **overrides: str | None) -> subprocess.Popen:
        """Start the script in its own process group, so a test can signal the group."""
        return subprocess.Popen(
            ["bash", str(SCRIPT), *arguments],
            env=self.env(**overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=restore_default_signals,
        )

    def prod_state(self) -> DatabaseState:
        return DatabaseState.read(self.cluster, self.prod_database)

    def sandbox_state(self) -> DatabaseState:
        return DatabaseState.read(self.cluster, self.sandbox_database)

    def restore_sessions(self) -> int:
        """Count the script's restore sessions still connected to the sandbox database."""
        with connect(self.cluster, "postgres") as connection:
            return connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (self.sandbox_database, RESTORE_APPLICATION),
            ).fetchone()[0]

    def restore_is_waiting_on_advisory_lock(self) -> bool:
        with connect(self.cluster, "postgres") as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
                " AND state = 'active' AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                (self.sandbox_database, RESTORE_APPLICATION),
            ).fetchone()
            return row[0] == 1


def signal_group(process: subprocess.Popen, signum: signal.Signals) -> None:
    os.killpg(process.pid, signum)


def wait_until_restore_blocked(setup: LifecycleSetup, process: subprocess.Popen) -> None:
    """Poll until the restore session waits on the test's advisory lock."""

    def blocked() -> bool:
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            raise AssertionError(f"script exited {process.returncode} before blocking: {stdout}{stderr}")
        return setup.restore_is_waiting_on_advisory_lock()

    wait_for(blocked, timeout=120, what="the restore session to wait on the advisory lock")


def wait_until_restore_session_gone(setup: LifecycleSetup) -> None:
    wait_for(lambda: setup.restore_sessions() == 0, timeout=60, what="the restore session to end")


def drop_test_databases(cluster: PostgresCluster, sandbox_database: str, prod_database: str) -> None:
    """Drop a test's prod database, its sandbox database and every copy named after the sandbox."""
    names = cluster.psql(
        f"SELECT datname FROM pg_database WHERE datname LIKE '{sandbox_database}%'"
        f" OR datname = '{prod_database}'"
    ).split()
    for database in names:
        cluster.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
