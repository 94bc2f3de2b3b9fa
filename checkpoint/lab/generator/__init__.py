"""Generator of a Dolibarr 20.0.2-shaped prod database and documents tree for the lab.

``generate_database`` fills an empty database with Dolibarr's schema for the tables the
tool and the stand-in use, a realistic configuration (rights, consts, users, jobs,
webhook, notifications) and business rows whose volume follows ``target_mb``.
``generate_documents`` writes the matching documents folder. Both are deterministic
for a seed, except the bcrypt salts of the password hashes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from checkpoint.exceptions import LabError
from checkpoint.lab import dolcrypt
from checkpoint.lab.generator import reference, schema
from checkpoint.lab.generator.documents import generate_documents
from checkpoint.lab.generator.rows import INVOICES_PER_CHUNK, RowSql, invoice_ref
from checkpoint.lab.generator.users import insert_users

__all__ = ["GenerationSummary", "generate_database", "generate_documents", "invoice_count_for", "invoice_ref"]

logger = logging.getLogger(__name__)

# Size in MiB of the database with the schema and configuration but no business rows,
# and the invoices that fit in each further MiB, counting their lines, payments, bank
# lines, third parties, contacts and indexes. Measured with this generator on
# PostgreSQL 15 after VACUUM, at 100 and 300 MiB: 586.5 and 587 invoices per MiB.
BASE_SIZE_MB = 9.6
INVOICES_PER_MB = 587
MIN_INVOICES = 10
BYTES_PER_MB = 1024 * 1024

TABLES = (
    "llx_user", "llx_user_rights", "llx_rights_def", "llx_user_param", "llx_const", "llx_societe",
    "llx_socpeople", "llx_facture", "llx_facturedet", "llx_bank_account", "llx_bank", "llx_paiement",
    "llx_paiement_facture", "llx_cronjob", "llx_webhook_target", "llx_notify_def",
    "llx_usergroup", "llx_usergroup_rights", "llx_usergroup_user", "llx_categorie_user",
    "llx_user_employment", "llx_user_extrafields",
)
TABLES_WITHOUT_ROWID = ("llx_rights_def", "llx_user_param", "llx_categorie_user")


@dataclass(frozen=True)
class GenerationSummary:
    """Outcome of ``generate_database``: invoice count, row count per table and database size."""

    invoice_count: int
    row_counts: dict[str, int] = field(default_factory=dict)
    database_bytes: int = 0


def invoice_count_for(target_mb: int) -> int:
    """Return the number of invoices that makes a database of about ``target_mb`` MiB.

    Below about 10 MiB the database keeps ``MIN_INVOICES`` invoices and its base size.
    """
    return max(MIN_INVOICES, round((target_mb - BASE_SIZE_MB) * INVOICES_PER_MB))


def generate_database(
    conninfo: str,
    *,
    target_mb: int = 20,
    seed: int = 0,
    admin_password: str,
    passfile: Path | None = None,
    instance_unique_id: str | None = None,
) -> GenerationSummary:
    """Create the schema and rows of a prod of about ``target_mb`` MiB in an empty database.

    Everything runs in one transaction, so a failure leaves the database empty. The
    caller's role must own the database; every object lands in schema ``public``.
    With ``instance_unique_id``, the secret consts (payment keys, SMTP password,
    ``CRON_KEY``) are stored encrypted with it as Dolibarr stores them, else in plaintext.
    Raises LabError when the database already has a ``llx_`` table or the server fails.
    """
    if target_mb <= 0:
        raise LabError(f"invalid target size {target_mb} MiB for the generated prod: use a positive number")
    if not admin_password:
        raise LabError("missing admin password for the generated prod: pass a non-empty admin_password")

    invoice_count = invoice_count_for(target_mb)
    started = time.monotonic()
    logger.info("generating a prod database of about %d MiB (%d invoices, seed %d)", target_mb, invoice_count, seed)
    try:
        with _connect(conninfo, passfile) as connection:
            _reject_existing_tables(connection)
            _fill(connection, invoice_count, seed, admin_password, instance_unique_id)
        with _connect(conninfo, passfile, autocommit=True) as connection:
            # Only the generated tables: a plain VACUUM by a non-superuser fills the server log
            # with one "only superuser can vacuum it" warning per system catalog.
            connection.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
            summary = _summarize(connection, invoice_count)
    except psycopg.Error as error:
        raise LabError(f"generating the prod database failed: {_first_line(error)}") from None

    logger.info(
        "generated %d invoices, %d MiB, in %.0f s",
        invoice_count, summary.database_bytes // BYTES_PER_MB, time.monotonic() - started,
    )
    return summary


def _connect(conninfo: str, passfile: Path | None, *, autocommit: bool = False) -> psycopg.Connection:
    options = {"passfile": str(passfile)} if passfile else {}
    return psycopg.connect(conninfo, autocommit=autocommit, **options)


def _first_line(error: psycopg.Error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _reject_existing_tables(connection: psycopg.Connection) -> None:
    row = connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'llx\\_%' LIMIT 1"
    ).fetchone()
    if row:
        database = connection.info.dbname
        raise LabError(
            f"database {database} already has table {row[0]}: generate the prod into an empty database"
        )


def _fill(
    connection: psycopg.Connection, invoice_count: int, seed: int, admin_password: str,
    instance_unique_id: str | None,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL search_path = public")
        cursor.execute(schema.FUNCTIONS)
        cursor.execute(schema.TABLES)
        _insert_configuration(cursor, admin_password, instance_unique_id)
        _insert_business_rows(cursor, RowSql(seed, invoice_count))
        cursor.execute(schema.CONSTRAINTS)
        cursor.execute(schema.tms_triggers())
        _reset_sequences(cursor)


def _insert_configuration(cursor: psycopg.Cursor, admin_password: str, instance_unique_id: str | None) -> None:
    install_time = reference.INSTALL_TIME
    cursor.executemany(
        "INSERT INTO llx_rights_def (id, entity, libelle, module, module_position, family_position, perms,"
        " subperms, type, bydefault, enabled) VALUES (%s, 1, %s, %s, %s, 0, %s, %s, %s, 0, '1')",
        reference.RIGHTS,
    )
    cursor.executemany(
        "INSERT INTO llx_const (name, entity, value, type, visible, note, tms)"
        f" VALUES (%s, %s, %s, %s, %s, %s, '{install_time}')",
        _const_rows(instance_unique_id),
    )
    insert_users(cursor, admin_password)
    _insert_jobs_and_hooks(cursor)


def _const_rows(instance_unique_id: str | None) -> list[tuple]:
    rows = reference.const_rows()
    if not instance_unique_id:
        return rows

    encrypted = []
    for name, entity, value, kind, visible, note in rows:
        if name in reference.ENCRYPTED_SETTINGS:
            value = dolcrypt.encrypt(value, instance_unique_id)
        encrypted.append((name, entity, value, kind, visible, note))
    return encrypted


def _insert_jobs_and_hooks(cursor: psycopg.Cursor) -> None:
    install_time = reference.INSTALL_TIME
    cursor.executemany(
        "INSERT INTO llx_cronjob (jobtype, label, classesname, objectname, methodename, params, module_name,"
        " priority, unitfrequency, frequency, status, test, entity, datec, datestart, tms, maxrun)"
        f" VALUES ('method', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{install_time}',"
        f" '{install_time}', '{install_time}', 0)",
        reference.CRON_JOBS,
    )
    cursor.execute(
        "INSERT INTO llx_webhook_target (ref, label, description, date_creation, tms, fk_user_creat, status,"
        " url, trigger_codes) VALUES ('', 'ERP-to-CRM-sync', 'Pushes invoices and customers to the CRM',"
        " %s, %s, %s, 1, %s, %s)",
        (install_time, install_time, reference.ADMIN_ID, reference.WEBHOOK_URL, reference.WEBHOOK_TRIGGERS),
    )
    for ref, label, bank, bic, iban, kind in reference.BANK_ACCOUNTS:
        cursor.execute(
            "INSERT INTO llx_bank_account (datec, tms, ref, label, entity, fk_user_author, bank, bic,"
            " iban_prefix, fk_pays, courant, clos, rappro, currency_code, min_allowed)"
            " VALUES (%s, %s, %s, %s, 1, %s, %s, %s, %s, 1, %s, 0, 1, 'EUR', 0)",
            (install_time, install_time, ref, label, reference.ADMIN_ID, bank, bic, iban, kind),
        )
    cursor.execute(
        "INSERT INTO llx_bank (rowid, datec, tms, datev, dateo, amount, label, fk_account, fk_user_author,"
        " fk_type, rappro) VALUES"
        " (1, %(at)s, %(at)s, %(day)s, %(day)s, 1000, '(InitialBankBalance)', 1, 1, 'SOLD', 0),"
        " (2, %(at)s, %(at)s, %(day)s, %(day)s, 0, '(InitialBankBalance)', 2, 1, 'SOLD', 0)",
        {"at": install_time, "day": install_time[:10]},
    )


def _insert_business_rows(cursor: psycopg.Cursor, rows: RowSql) -> None:
    cursor.execute(rows.third_parties())
    cursor.execute(rows.contacts())
    _insert_notifications(cursor)

    for first in range(1, rows.invoice_count + 1, INVOICES_PER_CHUNK):
        last = min(first + INVOICES_PER_CHUNK - 1, rows.invoice_count)
        cursor.execute(rows.invoices(first, last))
        cursor.execute(rows.invoice_lines(first, last))
        cursor.execute(rows.bank_lines_of_payments(first, last))
        cursor.execute(rows.payments(first, last))
        cursor.execute(rows.payment_links(first, last))
        logger.debug("generated invoices %d to %d of %d", first, last, rows.invoice_count)

    cursor.execute(rows.other_bank_lines())


def _insert_notifications(cursor: psycopg.Cursor) -> None:
    """Subscribe the first contact of the first two customers to invoice validations."""
    cursor.execute(
        "INSERT INTO llx_notify_def (tms, datec, fk_action, fk_soc, fk_contact, type)"
        " SELECT %s, %s::date, %s, p.fk_soc, min(p.rowid), 'email' FROM llx_socpeople AS p"
        " WHERE p.fk_soc IN (1, 2) GROUP BY p.fk_soc ORDER BY p.fk_soc",
        (reference.INSTALL_TIME, reference.INSTALL_TIME, reference.BILL_VALIDATE_ACTION_ID),
    )


def _reset_sequences(cursor: psycopg.Cursor) -> None:
    """Move each rowid sequence past the highest rowid, because bulk inserts set rowids explicitly."""
    for table in TABLES:
        if table in TABLES_WITHOUT_ROWID:
            continue
        cursor.execute(
            "SELECT setval(seq, coalesce((SELECT max(rowid) FROM {table}), 0) + 1, false)"
            " FROM pg_get_serial_sequence(%s, 'rowid') AS seq WHERE seq IS NOT NULL".format(table=table),
            (table,),
        )


def _summarize(connection: psycopg.Connection, invoice_count: int) -> GenerationSummary:
    counts = {}
    for table in TABLES:
        counts[table] = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return GenerationSummary(invoice_count=invoice_count, row_counts=counts, database_bytes=size)
