"""Read a database's content for comparisons: per-table row counts and checksums."""

from __future__ import annotations

from checkpoint.lab.pgcluster import PostgresCluster

TABLES_SQL = """
SELECT c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
 ORDER BY c.relname
"""


def table_checksums(
    cluster: PostgresCluster, database: str, where: dict[str, str] | None = None
) -> dict[str, tuple[int, str]]:
    """Return ``{table: (row count, md5 of its rows)}`` for every table in schema public.

    ``where`` maps a table name to a SQL condition that filters its rows first, to
    leave out rows that one side is expected to have on its own.
    """
    where = where or {}
    tables = cluster.psql(TABLES_SQL, database).split()
    queries = [
        f"SELECT '{table}', count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-')"
        f" FROM public.\"{table}\" t WHERE {where.get(table, 'true')};"
        for table in tables
    ]
    checksums = {}
    for line in cluster.psql("\n".join(queries), database).splitlines():
        table, count, digest = line.split("|")
        checksums[table] = (int(count), digest)
    return checksums
