"""Bulk rows of the generated prod: third parties, contacts, invoices, lines, payments, bank lines.

Every row is built by the server from ``generate_series``, so memory stays flat at any
size. Values come from ``hashint8extended(row number, seed)``, never from ``random()``,
so a seed gives the same rows whatever the chunking or the server's plan.

Invoice refs and statuses depend only on the invoice number and count, so that
``documents.py`` can compute the same refs without reading the database.
"""

from __future__ import annotations

import datetime

# Invoices spread evenly over five years that end on the install's last day.
FIRST_INVOICE_DATE = datetime.date(2019, 1, 1)
SPAN_DAYS = 5 * 365

# Fixed-size contiguous ranges of invoices inserted per statement, to log progress.
INVOICES_PER_CHUNK = 50_000

# One third party per this many invoices; every fifth third party is a supplier only.
INVOICES_PER_THIRD_PARTY = 8
SUPPLIER_EVERY = 5

# One bank line that is not an invoice payment (fees, supplier payments) per this many invoices.
INVOICES_PER_OTHER_BANK_LINE = 12

# Bank lines 1 and 2 are the opening balances of the two accounts, so an invoice's
# payment goes to bank line ``invoice rowid + BANK_PAYMENT_OFFSET``.
BANK_PAYMENT_OFFSET = 2

STATUS_DRAFT, STATUS_VALIDATED, STATUS_PAID, STATUS_ABANDONED = 0, 1, 2, 3
ABANDONED_EVERY = 50

# Word lists for names; SQL arrays are 1-based.
COMPANY_WORDS = (
    "Dupont", "Martin", "Globex", "Initech", "Umbrella", "Bernard", "Durand", "Lefebvre", "Moreau", "Laurent",
    "Simon", "Michel", "Garcia", "Roux", "Fournier", "Girard", "Bonnet", "Mercier", "Blanc", "Guerin",
    "Boyer", "Garnier", "Chevalier", "Francois", "Legrand", "Gauthier", "Perrin", "Robin", "Clement", "Morin",
    "Nicolas", "Henry", "Rousseau", "Mathieu", "Gautier", "Masson", "Marchand", "Duval", "Denis", "Dumont",
)
COMPANY_SUFFIXES = (
    "SARL", "SAS", "Industries", "& Fils", "Consulting", "Logistique", "Services", "Distribution",
    "Technologies", "Batiment", "Conseil", "Retail",
)
FIRST_NAMES = (
    "Jane", "Jean", "Marie", "Pierre", "Sophie", "Luc", "Claire", "Paul", "Julie", "Marc", "Anne", "Louis",
    "Emma", "Hugo", "Lea", "Nathan", "Chloe", "Thomas", "Camille", "Lucas",
)
JOB_TITLES = ("Accountant", "Purchasing manager", "CEO", "Office manager", "Sales director", "Assistant")
# (town, zip)
TOWNS = (
    ("Paris", "75008"), ("Lyon", "69001"), ("Marseille", "13001"), ("Nantes", "44000"), ("Lille", "59000"),
    ("Toulouse", "31000"), ("Bordeaux", "33000"), ("Strasbourg", "67000"), ("Rennes", "35000"),
    ("Nice", "06000"), ("Grenoble", "38000"), ("Dijon", "21000"),
)
STREETS = ("rue de la Paix", "avenue Foch", "boulevard Voltaire", "rue du Commerce", "place de la Gare")
# (label, unit price excluding tax, product_type) where type 1 is a service and 0 a product.
ITEMS = (
    ("Consulting services", "650.00", 1), ("Hosting (monthly)", "49.90", 1), ("Support contract", "120.00", 1),
    ("Training day", "900.00", 1), ("Software licence", "299.00", 0), ("Laptop", "1249.00", 0),
    ("Screen 27 inches", "279.00", 0), ("Installation", "180.00", 1), ("Maintenance (yearly)", "480.00", 1),
    ("Network switch", "349.00", 0), ("Cloud backup (monthly)", "19.90", 1), ("Development (day)", "720.00", 1),
)
VAT_RATES = ("20", "20", "20", "20", "10", "5.5")
# (llx_c_paiement id, bank line type code): transfer, cheque, card, cash.
PAYMENT_MODES = ((2, "VIR"), (2, "VIR"), (7, "CHQ"), (6, "CB"), (4, "LIQ"))
OTHER_BANK_LABELS = ("Bank fees", "Supplier payment", "Payroll", "Rent", "URSSAF")


def third_party_count(invoice_count: int) -> int:
    return max(SUPPLIER_EVERY, invoice_count // INVOICES_PER_THIRD_PARTY)


def invoice_status(number: int, invoice_count: int) -> int:
    """Return ``fk_statut`` of invoice ``number`` (1-based): the newest are drafts or unpaid."""
    if number > invoice_count - invoice_count // 100:
        return STATUS_DRAFT
    if number > invoice_count - invoice_count // 10:
        return STATUS_VALIDATED
    if number % ABANDONED_EVERY == 0:
        return STATUS_ABANDONED
    return STATUS_PAID


def invoice_date(number: int, invoice_count: int) -> datetime.date:
    return FIRST_INVOICE_DATE + datetime.timedelta(days=(number - 1) * SPAN_DAYS // invoice_count)


def invoice_ref(number: int, invoice_count: int) -> str:
    """Return the ref of invoice ``number``: ``FAyymm-nnnn`` as numbering module "terre" makes it."""
    if invoice_status(number, invoice_count) == STATUS_DRAFT:
        return f"(PROV{number})"
    return f"FA{invoice_date(number, invoice_count):%y%m}-{number:04d}"


# -- SQL building blocks ------------------------------------------------------


def _sql_text_array(values) -> str:
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"ARRAY[{quoted}]"


def _pick(values, hash_sql: str) -> str:
    """Return SQL that picks one of ``values`` by a non-negative hash."""
    return f"({_sql_text_array(values)})[1 + ({hash_sql}) % {len(values)}]"


class RowSql:
    """SQL statements that fill the bulk tables for one seed and one invoice count."""

    def __init__(self, seed: int, invoice_count: int):
        self.seed = seed
        self.invoice_count = invoice_count
        self.third_party_count = third_party_count(invoice_count)

    def hash(self, expression: str, salt: int) -> str:
        """Return SQL for a non-negative bigint hash of ``expression``, fixed by seed and salt."""
        return f"(hashint8extended(({expression})::bigint, {self.seed * 1000 + salt}) & 9223372036854775807)"

    def invoice_date_sql(self, number: str) -> str:
        first = FIRST_INVOICE_DATE.isoformat()
        return f"(DATE '{first}' + ((({number}) - 1)::bigint * {SPAN_DAYS} / {self.invoice_count})::int)"

    def invoice_status_sql(self, number: str) -> str:
        drafts = self.invoice_count // 100
        unpaid = self.invoice_count // 10
        return (
            f"CASE WHEN {number} > {self.invoice_count - drafts} THEN {STATUS_DRAFT}"
            f" WHEN {number} > {self.invoice_count - unpaid} THEN {STATUS_VALIDATED}"
            f" WHEN {number} % {ABANDONED_EVERY} = 0 THEN {STATUS_ABANDONED}"
            f" ELSE {STATUS_PAID} END"
        )

    def time_of_day_sql(self, expression: str, salt: int) -> str:
        """Return an interval between 08:00 and 18:00, fixed by ``expression``."""
        return f"make_interval(secs => 28800 + {self.hash(expression, salt)} % 36000)"

    # -- third parties and contacts ---------------------------------------

    def third_parties(self) -> str:
        count = self.third_party_count
        word = _pick(COMPANY_WORDS, self.hash("s", 11))
        suffix = _pick(COMPANY_SUFFIXES, self.hash("s", 12))
        town_index = f"(1 + {self.hash('s', 13)} % {len(TOWNS)})"
        towns = _sql_text_array(town for town, _ in TOWNS)
        zips = _sql_text_array(zip_code for _, zip_code in TOWNS)
        street = _pick(STREETS, self.hash("s", 14))
        supplier = f"(s % {SUPPLIER_EVERY} = 0)"
        created = (
            f"(DATE '{FIRST_INVOICE_DATE.isoformat()}' - 30 + ((s - 1)::bigint * {SPAN_DAYS} / {count})::int)"
            f" + {self.time_of_day_sql('s', 15)}"
        )
        return f"""
INSERT INTO llx_societe (
    rowid, nom, entity, statut, status, code_client, code_fournisseur, address, zip, town, fk_pays,
    phone, email, client, fournisseur, tva_assuj, fk_stcomm, fk_typent, fk_effectif, siren, siret,
    tva_intra, cond_reglement, mode_reglement, default_lang, multicurrency_code,
    datec, tms, fk_user_creat)
SELECT s, name, 1, 0, 1,
    CASE WHEN NOT {supplier} THEN 'CU' || to_char(created, 'YYMM') || '-' || lpad(s::text, greatest(5, length(s::text)), '0') END,
    CASE WHEN {supplier} THEN 'SU' || to_char(created, 'YYMM') || '-' || lpad(s::text, greatest(5, length(s::text)), '0') END,
    (1 + {self.hash('s', 16)} % 180)::text || ' ' || {street},
    ({zips})[{town_index}], ({towns})[{town_index}], 1,
    '+33 1 ' || lpad(({self.hash('s', 17)} % 100000000)::text, 8, '0'),
    'contact@' || lower(regexp_replace(name, '[^A-Za-z]+', '-', 'g')) || '-' || s || '.example',
    CASE WHEN {supplier} THEN 0 ELSE 1 END, CASE WHEN {supplier} THEN 1 ELSE 0 END,
    1, 0, 3, 1 + ({self.hash('s', 18)} % 5)::int,
    lpad(({self.hash('s', 19)} % 1000000000)::text, 9, '0'),
    lpad(({self.hash('s', 19)} % 1000000000)::text, 9, '0') || '00012',
    'FR' || lpad(({self.hash('s', 19)} % 100000000000)::text, 11, '0'),
    1, 2, 'fr_FR', 'EUR', created, created, 1 + ({self.hash('s', 20)} % 2)::int
FROM (
    SELECT s, {word} || ' ' || {suffix} AS name, {created} AS created
    FROM generate_series(1, {count}) AS s
) AS parties
ORDER BY s
"""

    def contacts(self) -> str:
        first_name = _pick(FIRST_NAMES, self.hash("s * 4 + k", 21))
        last_name = _pick(COMPANY_WORDS, self.hash("s * 4 + k", 22))
        job = _pick(JOB_TITLES, self.hash("s * 4 + k", 23))
        return f"""
INSERT INTO llx_socpeople (
    fk_soc, entity, civility, lastname, firstname, address, zip, town, fk_pays, poste, phone,
    phone_mobile, email, no_email, priv, fk_user_creat, default_lang, statut, datec, tms)
SELECT soc.rowid, 1, CASE WHEN k = 1 THEN 'MME' ELSE 'MR' END, last_name, first_name,
    soc.address, soc.zip, soc.town, 1, {job},
    soc.phone, '+33 6 ' || lpad(({self.hash('s * 4 + k', 24)} % 100000000)::text, 8, '0'),
    lower(first_name || '.' || last_name) || k || '@customer' || soc.rowid || '.example',
    0, 0, 1, 'fr_FR', 1, soc.datec + make_interval(mins => k), soc.datec + make_interval(mins => k)
FROM llx_societe AS soc
CROSS JOIN LATERAL generate_series(1, 1 + ({self.hash('soc.rowid', 25)} % 2)::int) AS k
CROSS JOIN LATERAL (SELECT soc.rowid AS s) AS numbering
CROSS JOIN LATERAL (SELECT {first_name} AS first_name, {last_name} AS last_name) AS names
ORDER BY soc.rowid, k
"""

    # -- invoices and their lines -------------------------------------------

    def priced_lines(self, first: int, last: int) -> str:
        """Return a query of the lines of invoices ``first`` to ``last``, with their amounts."""
        item_index = f"(1 + {self.hash('i * 8 + k', 31)} % {len(ITEMS)})"
        labels = _sql_text_array(label for label, _, _ in ITEMS)
        prices = "ARRAY[" + ", ".join(price for _, price, _ in ITEMS) + "]::numeric[]"
        types = "ARRAY[" + ", ".join(str(kind) for _, _, kind in ITEMS) + "]"
        vat = _pick(VAT_RATES, self.hash("i * 8 + k", 32))
        return f"""
SELECT i, k, ({labels})[item] AS label, ({types})[item] AS product_type, qty, subprice, tva_tx,
    round(qty * subprice, 2) AS total_ht,
    round(round(qty * subprice, 2) * tva_tx / 100, 2) AS total_tva
FROM (
    SELECT i, k, {item_index} AS item, (1 + {self.hash('i * 8 + k', 33)} % 4)::int AS qty,
        round(({prices})[{item_index}] * (80 + {self.hash('i * 8 + k', 34)} % 41) / 100, 2) AS subprice,
        ({vat})::numeric AS tva_tx
    FROM generate_series({first}, {last}) AS i
    CROSS JOIN LATERAL generate_series(1, 2 + ({self.hash('i', 35)} % 4)::int) AS k
) AS drawn
"""

    def invoices(self, first: int, last: int) -> str:
        status = self.invoice_status_sql("i")
        invoice_date = self.invoice_date_sql("i")
        ref = (
            f"CASE WHEN status = {STATUS_DRAFT} THEN '(PROV' || i || ')'"
            " ELSE 'FA' || to_char(datef, 'YYMM') || '-' || lpad(i::text, greatest(4, length(i::text)), '0') END"
        )
        customer = f"(1 + {self.hash('i', 36)} % {self.third_party_count})"
        return f"""
INSERT INTO llx_facture (
    rowid, ref, entity, type, fk_soc, datec, datef, date_valid, tms, date_closing, paye,
    close_code, total_ht, total_tva, total_ttc, fk_statut, fk_user_author, fk_user_valid, fk_user_closing,
    fk_cond_reglement, fk_mode_reglement, date_lim_reglement, model_pdf, last_main_doc,
    multicurrency_code, multicurrency_tx, multicurrency_total_ht, multicurrency_total_tva,
    multicurrency_total_ttc)
SELECT i, {ref}, 1, 0,
    CASE WHEN {customer} % {SUPPLIER_EVERY} = 0 THEN {customer} - 1 ELSE {customer} END,
    created, datef, CASE WHEN status > {STATUS_DRAFT} THEN datef END, created,
    CASE WHEN status IN ({STATUS_PAID}, {STATUS_ABANDONED}) THEN created + interval '20 days' END,
    CASE WHEN status = {STATUS_PAID} THEN 1 ELSE 0 END,
    CASE WHEN status = {STATUS_ABANDONED} THEN 'abandon' END,
    total_ht, total_tva, total_ht + total_tva, status, author,
    CASE WHEN status > {STATUS_DRAFT} THEN author END,
    CASE WHEN status IN ({STATUS_PAID}, {STATUS_ABANDONED}) THEN author END,
    2, 2, datef + 30, 'sponge',
    CASE WHEN status > {STATUS_DRAFT} THEN 'facture/' || {ref} || '/' || {ref} || '.pdf' END,
    'EUR', 1, total_ht, total_tva, total_ht + total_tva
FROM (
    SELECT i, {status} AS status, {invoice_date} AS datef,
        {invoice_date} + {self.time_of_day_sql('i', 37)} AS created,
        1 + ({self.hash('i', 38)} % 5)::int AS author,
        sum(total_ht) AS total_ht, sum(total_tva) AS total_tva
    FROM ({self.priced_lines(first, last)}) AS lines
    GROUP BY i
) AS invoices
ORDER BY i
"""

    def invoice_lines(self, first: int, last: int) -> str:
        return f"""
INSERT INTO llx_facturedet (
    fk_facture, description, vat_src_code, tva_tx, qty, subprice, total_ht, total_tva, total_ttc,
    product_type, rang, fk_user_author, multicurrency_code, multicurrency_subprice,
    multicurrency_total_ht, multicurrency_total_tva, multicurrency_total_ttc)
SELECT i, label, '', tva_tx, qty, subprice, total_ht, total_tva, total_ht + total_tva,
    product_type, k, 1, 'EUR', subprice, total_ht, total_tva, total_ht + total_tva
FROM ({self.priced_lines(first, last)}) AS lines
ORDER BY i, k
"""

    # -- payments and bank lines ------------------------------------------

    def paid_invoices(self, first: int, last: int) -> str:
        """Return a query of the paid invoices in a range, with their payment date and mode."""
        modes = _sql_text_array(code for _, code in PAYMENT_MODES)
        mode_ids = "ARRAY[" + ", ".join(str(mode_id) for mode_id, _ in PAYMENT_MODES) + "]"
        mode_index = f"(1 + {self.hash('f.rowid', 41)} % {len(PAYMENT_MODES)})"
        return f"""
SELECT f.rowid, f.total_ttc, f.fk_user_author, f.datef,
    f.datec + make_interval(days => 1 + ({self.hash('f.rowid', 42)} % 45)::int) AS paid_at,
    ({mode_ids})[{mode_index}] AS mode_id, ({modes})[{mode_index}] AS mode_code,
    f.rowid + {BANK_PAYMENT_OFFSET} AS bank_line
FROM llx_facture AS f
WHERE f.rowid BETWEEN {first} AND {last} AND f.fk_statut = {STATUS_PAID}
"""

    def bank_lines_of_payments(self, first: int, last: int) -> str:
        return f"""
INSERT INTO llx_bank (
    rowid, datec, tms, datev, dateo, amount, label, fk_account, fk_user_author, fk_type,
    num_releve, num_chq, rappro, banque, emetteur)
SELECT bank_line, paid_at, paid_at, paid_at::date, paid_at::date, total_ttc, '(CustomerInvoicePayment)',
    CASE WHEN mode_code = 'LIQ' THEN 2 ELSE 1 END, fk_user_author, mode_code,
    to_char(paid_at, 'YYYYMM'), CASE WHEN mode_code = 'CHQ' THEN lpad(rowid::text, 7, '0') END,
    1, CASE WHEN mode_code = 'CHQ' THEN 'Credit Agricole' END,
    CASE WHEN mode_code = 'CHQ' THEN 'Customer' END
FROM ({self.paid_invoices(first, last)}) AS paid
ORDER BY rowid
"""

    def payments(self, first: int, last: int) -> str:
        return f"""
INSERT INTO llx_paiement (
    rowid, ref, entity, datec, tms, datep, amount, multicurrency_amount, fk_paiement, num_paiement,
    fk_bank, fk_user_creat, statut, fk_export_compta, pos_change)
SELECT rowid, 'PAY' || to_char(paid_at, 'YYMM') || '-' || lpad(rowid::text, greatest(4, length(rowid::text)), '0'),
    1, paid_at, paid_at, paid_at, total_ttc, total_ttc, mode_id,
    CASE WHEN mode_code = 'CHQ' THEN lpad(rowid::text, 7, '0') END, bank_line, fk_user_author, 0, 0, 0
FROM ({self.paid_invoices(first, last)}) AS paid
ORDER BY rowid
"""

    def payment_links(self, first: int, last: int) -> str:
        return f"""
INSERT INTO llx_paiement_facture (rowid, fk_paiement, fk_facture, amount, multicurrency_code,
    multicurrency_tx, multicurrency_amount)
SELECT rowid, rowid, rowid, total_ttc, 'EUR', 1, total_ttc
FROM ({self.paid_invoices(first, last)}) AS paid
ORDER BY rowid
"""

    def other_bank_lines(self) -> str:
        """Return the insert of fees and supplier payments, numbered after the payments' lines."""
        count = max(1, self.invoice_count // INVOICES_PER_OTHER_BANK_LINE)
        first_id = self.invoice_count + BANK_PAYMENT_OFFSET + 1
        label = _pick(OTHER_BANK_LABELS, self.hash("j", 51))
        day = (
            f"(DATE '{FIRST_INVOICE_DATE.isoformat()}' + ((j - 1)::bigint * {SPAN_DAYS} / {count})::int)"
            f" + {self.time_of_day_sql('j', 52)}"
        )
        return f"""
INSERT INTO llx_bank (
    rowid, datec, tms, datev, dateo, amount, label, fk_account, fk_user_author, fk_type, num_releve, rappro)
SELECT {first_id} + j - 1, day, day, day::date, day::date,
    -round((5 + {self.hash('j', 53)} % 500000 / 100.0)::numeric, 2), label, 1, 1,
    CASE WHEN label = 'Bank fees' THEN 'PRE' ELSE 'VIR' END, to_char(day, 'YYYYMM'), 1
FROM (SELECT j, {label} AS label, {day} AS day FROM generate_series(1, {count}) AS j) AS other
ORDER BY j
"""
