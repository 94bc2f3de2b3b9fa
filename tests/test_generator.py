"""The lab's generator of Dolibarr-shaped prod data, checked against the real 20.0.2 fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import bcrypt
import psycopg
import pytest

from checkpoint.exceptions import LabError
from checkpoint.lab import dolcrypt
from checkpoint.lab.generator import (
    TABLES,
    generate_database,
    generate_documents,
    invoice_count_for,
)
from checkpoint.lab.generator.documents import PNG_SIGNATURE
from tests.conftest import PROD_DUMP, make_shared_tmpdir

OWNER = "generator_owner"
ADMIN_PASSWORD = "Lab-Admin-Pass-42!"
SEED = 7
SMALL_MB = 12
LARGER_MB = 24
MIB = 1024 * 1024


COLUMNS_QUERY = """
SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale,
    is_nullable, column_default
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = %s
"""


def _fetch(conninfo: str, passfile: Path, query: str, params=()) -> list[tuple]:
    with psycopg.connect(conninfo, passfile=str(passfile)) as connection:
        return connection.execute(query, params).fetchall()


def _generate(cluster, database: str, *, target_mb: int = SMALL_MB, seed: int = SEED):
    cluster.create_database(database, OWNER)
    return generate_database(
        cluster.uri(database, OWNER),
        target_mb=target_mb,
        seed=seed,
        admin_password=ADMIN_PASSWORD,
        passfile=cluster.pgpass_file,
    )


def _content_checksum(cluster, database: str) -> str:
    """Return an md5 of every generated row except password hashes, whose bcrypt salts are random."""
    parts = []
    for table in TABLES:
        if table == "llx_user":
            rows = "(SELECT to_jsonb(t) - 'pass_crypted' AS row FROM llx_user AS t)"
        else:
            rows = f"(SELECT to_jsonb(t) AS row FROM {table} AS t)"
        parts.append(f"SELECT '{table}', md5(string_agg(row::text, '|' ORDER BY row::text)) FROM {rows} AS r")
    return cluster.psql(";\n".join(parts) + ";", database=database)


@pytest.fixture(scope="module")
def owner_role(pg_cluster):
    pg_cluster.create_role(OWNER)
    return OWNER


@pytest.fixture(scope="module")
def generated(pg_cluster, owner_role):
    summary = _generate(pg_cluster, "generated_small")
    return pg_cluster.uri("generated_small", OWNER), summary


@pytest.fixture(scope="module")
def real_fixture_database(pg_cluster, fixture_files):
    """Restore the real Dolibarr 20.0.2 prod dump, to compare the generated schema with."""
    database = "generator_real_fixture"
    pg_cluster.create_database(database, "postgres")
    result = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "-d", pg_cluster.uri(database), str(PROD_DUMP)],
        capture_output=True, text=True, env={**os.environ, **pg_cluster.client_env()},
    )
    assert result.returncode == 0, result.stderr
    return pg_cluster.uri(database)


@pytest.fixture
def shared_tmpdir():
    folder = make_shared_tmpdir("checkpoint-generator-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# -- schema -----------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_columns_exist_in_real_schema(pg_cluster, generated, real_fixture_database, table):
    conninfo, _ = generated
    ours = {row[0]: row[1:] for row in _fetch(conninfo, pg_cluster.pgpass_file, COLUMNS_QUERY, (table,))}
    real = {row[0]: row[1:] for row in _fetch(real_fixture_database, pg_cluster.pgpass_file, COLUMNS_QUERY, (table,))}

    assert ours, f"table {table} was not generated"
    assert sorted(set(ours) - set(real)) == []
    mismatches = {name: (ours[name], real[name]) for name in ours if name in real and ours[name] != real[name]}
    assert mismatches == {}


@pytest.mark.parametrize("table", TABLES)
def test_indexes_exist_in_real_schema(pg_cluster, generated, real_fixture_database, table):
    query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s"
    conninfo, _ = generated
    ours = dict(_fetch(conninfo, pg_cluster.pgpass_file, query, (table,)))
    real = dict(_fetch(real_fixture_database, pg_cluster.pgpass_file, query, (table,)))

    assert {name: ours[name] for name in ours if real.get(name) != ours[name]} == {}


@pytest.mark.parametrize("table", ["llx_user", "llx_const", "llx_facture", "llx_bank", "llx_societe"])
def test_tms_trigger_as_in_real_schema(pg_cluster, generated, table):
    conninfo, _ = generated
    rows = _fetch(
        conninfo, pg_cluster.pgpass_file,
        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", (table,),
    )

    assert [name for name, _ in rows] == ["update_customer_modtime"]
    assert "update_modified_column_tms()" in rows[0][1]


def test_sequences_continue_after_rows(pg_cluster, generated):
    conninfo, _ = generated
    with psycopg.connect(conninfo, passfile=str(pg_cluster.pgpass_file)) as connection:
        highest = connection.execute("SELECT max(rowid) FROM llx_bank").fetchone()[0]
        new_id = connection.execute(
            "INSERT INTO llx_bank (label, amount) VALUES ('probe', 1) RETURNING rowid"
        ).fetchone()[0]
        connection.rollback()

    assert new_id == highest + 1


# -- configuration rows -------------------------------------------------------------


def test_admin_password_matches_bcrypt_hash(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(
        conninfo, pg_cluster.pgpass_file,
        "SELECT pass_crypted, admin, entity FROM llx_user WHERE login = 'admin'",
    )
    stored, admin_flag, entity = rows[0]

    assert stored.startswith("$2y$10$")
    assert bcrypt.checkpw(ADMIN_PASSWORD.encode(), stored.encode())
    assert bcrypt.checkpw(ADMIN_PASSWORD.encode(), ("$2b$" + stored[4:]).encode())
    assert not bcrypt.checkpw(b"wrong password", stored.encode())
    assert admin_flag == 1
    assert entity == 0


def test_admin_password_absent_from_rows(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(
        conninfo, pg_cluster.pgpass_file,
        "SELECT count(*) FROM llx_user AS u WHERE strpos(u::text, %s) > 0", (ADMIN_PASSWORD,),
    )

    assert rows == [(0,)]


def test_normal_users_have_bcrypt_hashes(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT login, pass_crypted FROM llx_user WHERE admin = 0")

    assert len(rows) >= 3
    assert [login for login, stored in rows if not stored.startswith("$2y$10$")] == []


def test_api_module_const_at_entity_0(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(
        conninfo, pg_cluster.pgpass_file, "SELECT entity, value FROM llx_const WHERE name = 'MAIN_MODULE_API'"
    )

    assert rows == [(0, "1")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MAIN_VERSION_LAST_INSTALL", "20.0.2"),
        ("MAIN_MODULE_BANQUE", "1"),
        ("MAIN_MODULE_FACTURE", "1"),
        ("MAIN_MODULE_SOCIETE", "1"),
        ("STRIPE_LIVE", "1"),
        ("MAIN_DISABLE_ALL_MAILS", "0"),
    ],
)
def test_prod_consts_present(pg_cluster, generated, name, expected):
    conninfo, _ = generated
    rows = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT value FROM llx_const WHERE name = %s", (name,))

    assert rows == [(expected,)]


def test_secret_consts_plain_without_instance_id(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT value FROM llx_const WHERE name = 'STRIPE_LIVE_SECRET_KEY'")

    assert rows[0][0].startswith("sk_live_")


def test_secret_consts_encrypted_with_instance_id(pg_cluster, owner_role):
    instance_id = "0123456789abcdef0123456789abcdef"
    pg_cluster.create_database("generated_encrypted", OWNER)
    generate_database(
        pg_cluster.uri("generated_encrypted", OWNER), target_mb=1, admin_password=ADMIN_PASSWORD,
        passfile=pg_cluster.pgpass_file, instance_unique_id=instance_id,
    )
    rows = _fetch(
        pg_cluster.uri("generated_encrypted", OWNER), pg_cluster.pgpass_file,
        "SELECT name, value FROM llx_const WHERE name IN ('STRIPE_LIVE_SECRET_KEY', 'PAYPAL_API_USER')",
    )
    values = dict(rows)

    assert dolcrypt.is_encrypted(values["STRIPE_LIVE_SECRET_KEY"])
    assert dolcrypt.decrypt(values["STRIPE_LIVE_SECRET_KEY"], instance_id).startswith("sk_live_")
    assert not dolcrypt.is_encrypted(values["PAYPAL_API_USER"])


def test_paypal_left_in_live_mode(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT value FROM llx_const WHERE name = 'PAYPAL_API_SANDBOX'")

    assert rows == []


@pytest.mark.parametrize(
    ("right_id", "module", "perms", "subperms"),
    [
        (11, "facture", "lire", ""),
        (111, "banque", "lire", ""),
        (112, "banque", "modifier", ""),
        (117, "banque", "cheque", ""),
        (121, "societe", "lire", ""),
        (251, "user", "user", "lire"),
        (341, "user", "self_advance", "readperms"),
        (342, "user", "self", "creer"),
        (343, "user", "self", "password"),
        (344, "user", "self_advance", "writeperms"),
        (2610, "api", "apikey", "generate"),
    ],
)
def test_rights_match_real_definitions(
    pg_cluster, generated, real_fixture_database, right_id, module, perms, subperms
):
    conninfo, _ = generated
    query = "SELECT id, entity, libelle, module, perms, subperms, type FROM llx_rights_def WHERE id = %s"
    ours = _fetch(conninfo, pg_cluster.pgpass_file, query, (right_id,))
    real = _fetch(real_fixture_database, pg_cluster.pgpass_file, query, (right_id,))

    assert ours == real
    assert ours[0][3:6] == (module, perms, subperms)


def test_outbound_channels_armed_like_prod(pg_cluster, generated):
    conninfo, _ = generated
    passfile = pg_cluster.pgpass_file

    assert _fetch(conninfo, passfile, "SELECT count(*) FROM llx_webhook_target WHERE status = 1") == [(1,)]
    assert _fetch(conninfo, passfile, "SELECT count(*) FROM llx_notify_def WHERE fk_contact IS NOT NULL") == [(2,)]
    assert _fetch(conninfo, passfile, "SELECT count(*) > 0 FROM llx_cronjob WHERE status = 1") == [(True,)]


# -- business rows ----------------------------------------------------------------


def test_invoice_totals_equal_line_sums(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(
        conninfo, pg_cluster.pgpass_file,
        "SELECT count(*) FROM llx_facture AS f"
        " WHERE f.total_ttc <> (SELECT sum(d.total_ttc) FROM llx_facturedet AS d WHERE d.fk_facture = f.rowid)",
    )

    assert rows == [(0,)]


def test_invoices_have_two_to_five_lines(pg_cluster, generated):
    conninfo, _ = generated
    rows = _fetch(
        conninfo, pg_cluster.pgpass_file,
        "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM llx_facturedet GROUP BY fk_facture) AS lines",
    )

    assert rows == [(2, 5)]


def test_payments_match_paid_invoices(pg_cluster, generated):
    conninfo, _ = generated
    passfile = pg_cluster.pgpass_file
    unmatched = _fetch(
        conninfo, passfile,
        "SELECT count(*) FROM llx_facture AS f"
        " LEFT JOIN llx_paiement_facture AS pf ON pf.fk_facture = f.rowid"
        " LEFT JOIN llx_paiement AS p ON p.rowid = pf.fk_paiement"
        " LEFT JOIN llx_bank AS b ON b.rowid = p.fk_bank"
        " WHERE f.paye = 1 AND (b.amount IS DISTINCT FROM f.total_ttc OR p.amount IS DISTINCT FROM f.total_ttc)",
    )
    paid = _fetch(conninfo, passfile, "SELECT count(*) FROM llx_facture WHERE paye = 1")

    assert unmatched == [(0,)]
    assert paid[0][0] > 0


def test_same_seed_same_content(pg_cluster, owner_role):
    _generate(pg_cluster, "generated_seed_a")
    _generate(pg_cluster, "generated_seed_b")

    assert _content_checksum(pg_cluster, "generated_seed_a") == _content_checksum(pg_cluster, "generated_seed_b")


def test_other_seed_other_content(pg_cluster, owner_role):
    _generate(pg_cluster, "generated_seed_c", seed=SEED + 1)
    _generate(pg_cluster, "generated_seed_d")

    assert _content_checksum(pg_cluster, "generated_seed_c") != _content_checksum(pg_cluster, "generated_seed_d")


def test_larger_target_more_rows(pg_cluster, generated):
    _, small = generated
    larger = _generate(pg_cluster, "generated_larger", target_mb=LARGER_MB)
    expected_ratio = invoice_count_for(LARGER_MB) / invoice_count_for(SMALL_MB)

    for table in ("llx_facture", "llx_facturedet", "llx_societe", "llx_socpeople", "llx_paiement", "llx_bank"):
        ratio = larger.row_counts[table] / small.row_counts[table]
        assert ratio == pytest.approx(expected_ratio, rel=0.1), table
    assert larger.database_bytes > small.database_bytes


@pytest.mark.parametrize("target_mb", [SMALL_MB, LARGER_MB])
def test_database_size_near_target(pg_cluster, generated, target_mb):
    summary = generated[1] if target_mb == SMALL_MB else _generate(
        pg_cluster, f"generated_size_{target_mb}", target_mb=target_mb
    )

    assert summary.database_bytes / MIB == pytest.approx(target_mb, rel=0.15)


def test_summary_counts_every_table(generated):
    _, summary = generated

    assert sorted(summary.row_counts) == sorted(TABLES)
    assert summary.row_counts["llx_facture"] == summary.invoice_count


def test_non_empty_database_rejected(pg_cluster, generated):
    conninfo, summary = generated

    with pytest.raises(LabError, match="already has table"):
        generate_database(conninfo, admin_password=ADMIN_PASSWORD, passfile=pg_cluster.pgpass_file)
    rows = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT count(*) FROM llx_facture")
    assert rows == [(summary.invoice_count,)]


def test_dump_restores_cleanly(pg_cluster, generated, shared_tmpdir):
    env = {**os.environ, **pg_cluster.client_env()}
    dump = shared_tmpdir / "generated.dump"
    pg_cluster.create_database("generated_restored", "postgres")

    dumped = subprocess.run(
        ["pg_dump", "-Fc", "-f", str(dump), pg_cluster.uri("generated_small", OWNER)],
        capture_output=True, text=True, env=env,
    )
    restored = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "-d", pg_cluster.uri("generated_restored"), str(dump)],
        capture_output=True, text=True, env=env,
    )

    assert dumped.returncode == 0, dumped.stderr
    assert restored.returncode == 0, restored.stderr
    assert restored.stderr == ""
    assert pg_cluster.psql("SELECT count(*) FROM llx_facture", database="generated_restored").strip() == str(
        generated[1].invoice_count
    )


# -- documents --------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents(generated):
    root = make_shared_tmpdir("checkpoint-documents-") / "documents"
    generate_documents(root, invoice_count=generated[1].invoice_count, seed=SEED)
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.mark.parametrize(
    ("const", "relative_folder"),
    [
        ("MAIN_INFO_SOCIETE_LOGO", "mycompany/logos"),
        ("MAIN_INFO_SOCIETE_LOGO_SMALL", "mycompany/logos/thumbs"),
        ("MAIN_INFO_SOCIETE_LOGO_MINI", "mycompany/logos/thumbs"),
    ],
)
def test_logo_files_named_by_consts(pg_cluster, generated, documents, const, relative_folder):
    conninfo, _ = generated
    name = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT value FROM llx_const WHERE name = %s", (const,))[0][0]
    logo = documents / relative_folder / name

    assert logo.is_file()
    assert logo.read_bytes().startswith(PNG_SIGNATURE)
    assert logo.read_bytes()[12:16] == b"IHDR"


def test_invoice_pdfs_match_invoice_refs(pg_cluster, generated, documents):
    conninfo, _ = generated
    rows = _fetch(conninfo, pg_cluster.pgpass_file, "SELECT ref, last_main_doc FROM llx_facture WHERE fk_statut > 0")
    folders = sorted(path.name for path in (documents / "facture").iterdir() if path.name != "temp")

    assert folders == sorted(ref for ref, _ in rows)
    assert [doc for ref, doc in rows if not (documents / doc).is_file()] == []


def test_invoice_pdfs_start_with_pdf_header(documents):
    pdfs = list((documents / "facture").glob("*/*.pdf"))

    assert pdfs
    assert [pdf.name for pdf in pdfs if not pdf.read_bytes().startswith(b"%PDF-")] == []
    assert [pdf.name for pdf in pdfs if not pdf.read_bytes().rstrip().endswith(b"%%EOF")] == []


def test_documents_root_files(documents):
    assert (documents / "install.lock").is_file()
    assert oct((documents / "install.lock").stat().st_mode & 0o777) == oct(0o444)
    assert "Deny from all" in (documents / ".htaccess").read_text()
    for folder in ("societe", "banque", "users/temp", "facture/temp", "api/temp"):
        assert (documents / folder).is_dir(), folder


def test_documents_identical_for_same_seed(generated, documents, shared_tmpdir):
    again = shared_tmpdir / "documents"
    generate_documents(again, invoice_count=generated[1].invoice_count, seed=SEED)

    def snapshot(root: Path) -> list[tuple]:
        return sorted(
            (str(path.relative_to(root)), path.stat().st_mtime, path.read_bytes() if path.is_file() else b"")
            for path in root.rglob("*")
        )

    assert snapshot(again) == snapshot(documents)


def test_documents_into_non_empty_folder_rejected(shared_tmpdir):
    (shared_tmpdir / "existing.txt").write_text("keep me")

    with pytest.raises(LabError, match="not empty"):
        generate_documents(shared_tmpdir, invoice_count=3)
