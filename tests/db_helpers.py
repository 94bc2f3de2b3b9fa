"""Read a database's content for comparisons: per-table row counts and checksums."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from checkpoint.lab.pgcluster import PostgresCluster

TABLES_SQL = """
SELECT c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
 ORDER BY c.relname
"""


def table_checksums(
    cluster: PostgresCluster,
    database: str,
    where: dict[str, str] | None = None,
    ignore_columns: dict[str, list[str]] | None = None,
) -> dict[str, tuple[int, str]]:
    """Return ``{table: (row count, md5 of its rows)}`` for every table in schema public.

    ``where`` maps a table name to a SQL condition that filters its rows first, and
    ``ignore_columns`` maps a table name to columns left out of its checksum. Both
    leave out what one side is expected to have on its own.
    """
    where = where or {}
    ignore_columns = ignore_columns or {}
    tables = cluster.psql(TABLES_SQL, database).split()
    queries = []
    for table in tables:
        row = "t::text"
        if table in ignore_columns:
            dropped = ", ".join(f"'{column}'" for column in ignore_columns[table])
            row = f"(to_jsonb(t) - ARRAY[{dropped}])::text"
        queries.append(
            f"SELECT '{table}', count(*), coalesce(md5(string_agg({row}, '|' ORDER BY {row})), '-')"
            f" FROM public.\"{table}\" t WHERE {where.get(table, 'true')};"
        )
    checksums = {}
    for line in cluster.psql("\n".join(queries), database).splitlines():
        table, count, digest = line.split("|")
        checksums[table] = (int(count), digest)
    return checksums


def restore_dump(cluster: PostgresCluster, dump: Path, database: str, owner: str) -> str:
    """Restore ``dump`` into a new database owned by ``owner``; return its URI as that owner."""
    cluster.create_role(owner, createdb=True)
    cluster.create_database(database, owner)
    uri = cluster.uri(database, owner)
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "-d", uri, str(dump)],
        check=True, capture_output=True, env={**os.environ, **cluster.client_env()},
    )
    return uri


def extract_documents(tarball: Path, folder: Path) -> Path:
    """Extract a documents tarball into ``folder`` and return its top ``documents`` folder."""
    with tarfile.open(tarball) as archive:
        archive.extractall(folder, filter="data")
    return folder / "documents"
