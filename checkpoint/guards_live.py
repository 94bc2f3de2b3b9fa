"""Apply or check the guards on a live sandbox database, for ``guards.apply`` and ``status``.

These connect to ``checkpoint.lifecycle.sandbox_db_uri`` directly with psycopg, with
the password from the configured pgpass file, so they need the sandbox database to be
reachable from this machine. A refresh applies the guards through the lifecycle script
instead, inside its restore transaction.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from checkpoint.exceptions import CheckpointError, ConfigError
from checkpoint.files import write_private
from checkpoint.guards import Guard, check_only_sql, check_query, refresh_sql
from checkpoint.outcome import Outcome, Run, StepFailed
from checkpoint.settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10


class GuardsUnavailable(CheckpointError):
    """The sandbox database could not be reached or queried to apply or check the guards."""


@dataclass
class GuardsCheck:
    """The guards in effect; ``checked`` is false when the database could not be read."""

    checked: bool
    not_in_effect: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def guarded(self) -> bool | None:
        return None if not self.checked else not self.not_in_effect


@contextmanager
def sandbox_connection(settings: Settings, *, read_only: bool) -> Iterator[psycopg.Connection]:
    """Connect to the sandbox database; translate connection errors into GuardsUnavailable."""
    uri = settings.lifecycle.sandbox_db_uri
    if not uri:
        raise ConfigError(
            "missing checkpoint.lifecycle.sandbox_db_uri: the guards need the sandbox database; "
            "set it in invoke.yaml, or start the built-in lab with invoke lab.up"
        )
    options = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "checkpoint guards"}
    if settings.lifecycle.pgpassfile:
        options["passfile"] = str(settings.lifecycle.pgpassfile)
    try:
        connection = psycopg.connect(uri, **options)
    except psycopg.Error as error:
        raise GuardsUnavailable(f"cannot connect to the sandbox database: {_first_line(error)}; check "
                                "checkpoint.lifecycle.sandbox_db_uri and the pgpass file") from None
    connection.read_only = read_only
    try:
        yield connection
    finally:
        connection.close()


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _in_effect(connection: psycopg.Connection, guard: Guard) -> bool:
    try:
        row = connection.execute(check_query(guard)).fetchone()
    except psycopg.Error as error:
        raise GuardsUnavailable(f"the check of guard {guard.name} failed: {_first_line(error)}") from None
    return bool(row and row[0])


def check_guards(settings: Settings) -> GuardsCheck:
    """Check every guard in one read-only transaction; never writes."""
    try:
        with sandbox_connection(settings, read_only=True) as connection:
            with connection.transaction():
                connection.execute("SET LOCAL search_path = public")
                missing = [guard.name for guard in settings.guards if not _in_effect(connection, guard)]
    except GuardsUnavailable as error:
        return GuardsCheck(checked=False, detail=str(error))
    if missing:
        return GuardsCheck(True, missing, f"not in effect: {', '.join(missing)}; run invoke guards.apply")
    return GuardsCheck(True, [], f"all {len(settings.guards)} guards in effect")


def apply_guards(settings: Settings, run: Run) -> None:
    """Apply every guard in one transaction and record ok or changed per guard.

    A guard whose statements fail, or whose check is still false afterwards, records a
    failed outcome, and the transaction rolls back so that no guard is half applied.
    """
    with sandbox_connection(settings, read_only=False) as connection:
        outcomes = []
        try:
            with connection.transaction():
                connection.execute("SET LOCAL standard_conforming_strings = on")
                connection.execute("SET LOCAL search_path = public")
                for guard in settings.guards:
                    outcome = _apply_one(connection, guard)
                    outcomes.append(outcome)
                    if outcome.is_failed:
                        raise _Rollback()
        except _Rollback:
            pass

    for outcome in outcomes:
        run.record(outcome)
        if outcome.is_failed:
            outcome.message += "; the transaction was rolled back, so no guard was changed"
            raise StepFailed(outcome)


class _Rollback(Exception):
    """Raised inside the transaction to roll it back after a failed guard."""


def _apply_one(connection: psycopg.Connection, guard: Guard) -> Outcome:
    step = f"guard {guard.name}"
    if _in_effect(connection, guard):
        return Outcome.ok(step, guard.description)
    try:
        with connection.transaction():
            connection.execute(guard.apply_sql)
    except psycopg.Error as error:
        return Outcome.failed(step, f"guard {guard.name} failed: {_first_line(error)}")
    if not _in_effect(connection, guard):
        return Outcome.failed(step, f"guard {guard.name} is still not in effect after applying it: check its SQL")
    log.info("applied guard %s", guard.name)
    return Outcome.changed(step, guard.description)


@contextmanager
def guards_sql_file(guards: tuple[Guard, ...]) -> Iterator[Path]:
    """Write the SQL that a refresh sends before COMMIT into a private temporary file, and yield its path."""
    with _private_sql_file("guards.sql", refresh_sql(guards)) as path:
        yield path


@contextmanager
def guards_check_sql_file(guards: tuple[Guard, ...]) -> Iterator[Path]:
    """Write the SQL that checks the guards without applying them into a private temporary file, and yield its path."""
    with _private_sql_file("guards-check.sql", check_only_sql(guards)) as path:
        yield path


@contextmanager
def _private_sql_file(name: str, sql: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="checkpoint-guards-") as folder:
        path = Path(folder) / name
        write_private(path, sql.encode())
        yield path
