"""DDL for the Dolibarr 20.0.2 tables that the lab's generated prod database contains.

Table, column, sequence, index and trigger names follow Dolibarr 20.0.2 on PostgreSQL,
with the same types, NOT NULL flags, defaults and unique indexes. The big tables keep
only the columns that the lab and realistic data fill; the small ones keep them all.

The DDL comes in two parts so that bulk loads run without indexes or foreign keys:
``TABLES`` before the load, ``CONSTRAINTS`` after it, as ``pg_restore`` does.
"""

# Dolibarr installs these helpers on PostgreSQL so its MySQL-style SQL runs unchanged.
FUNCTIONS = """
CREATE FUNCTION update_modified_column_tms() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN NEW.tms = now(); RETURN NEW; END; $$;

CREATE FUNCTION unix_timestamp(timestamp without time zone) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT EXTRACT(EPOCH FROM $1)::bigint; $$;

CREATE FUNCTION unix_timestamp(timestamp with time zone) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT EXTRACT(EPOCH FROM $1)::bigint; $$;

CREATE FUNCTION year(date) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT EXTRACT(YEAR FROM $1)::integer; $$;

CREATE FUNCTION year(timestamp without time zone) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT EXTRACT(YEAR FROM $1)::integer; $$;

CREATE FUNCTION month(date) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT EXTRACT(MONTH FROM $1)::integer; $$;

CREATE FUNCTION month(timestamp without time zone) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT EXTRACT(MONTH FROM $1)::integer; $$;

CREATE FUNCTION day(date) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT EXTRACT(DAY FROM $1)::integer; $$;

CREATE FUNCTION day(timestamp without time zone) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT EXTRACT(DAY FROM $1)::integer; $$;

CREATE FUNCTION dol_util_triggerall(doenable boolean) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    mytables RECORD;
BEGIN
    FOR mytables IN
        SELECT relname FROM pg_class
        WHERE relhastriggers IS TRUE AND relkind = 'r' AND NOT relname ILIKE 'pg_%'
    LOOP
        IF doenable THEN
            EXECUTE 'ALTER TABLE ' || mytables.relname || ' ENABLE TRIGGER ALL';
        ELSE
            EXECUTE 'ALTER TABLE ' || mytables.relname || ' DISABLE TRIGGER ALL';
        END IF;
    END LOOP;
    RETURN 1;
END;
$$;
"""

TABLES = """
CREATE TABLE llx_user (
    rowid serial PRIMARY KEY,
    entity integer DEFAULT 1 NOT NULL,
    ref_employee varchar(50),
    ref_ext varchar(50),
    admin smallint DEFAULT 0,
    employee smallint DEFAULT 1,
    fk_establishment integer DEFAULT 0,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    fk_user_creat integer,
    fk_user_modif integer,
    login varchar(50) NOT NULL,
    pass_encoding varchar(24),
    pass varchar(128),
    pass_crypted varchar(128),
    pass_temp varchar(128),
    api_key varchar(128),
    gender varchar(10),
    civility varchar(6),
    lastname varchar(50),
    firstname varchar(50),
    address varchar(255),
    zip varchar(25),
    town varchar(50),
    fk_state integer DEFAULT 0,
    fk_country integer DEFAULT 0,
    birth date,
    birth_place varchar(64),
    job varchar(128),
    office_phone varchar(20),
    office_fax varchar(20),
    user_mobile varchar(20),
    personal_mobile varchar(20),
    email varchar(255),
    personal_email varchar(255),
    email_oauth2 varchar(255),
    signature text,
    socialnetworks text,
    fk_soc integer,
    fk_socpeople integer,
    fk_member integer,
    fk_user integer,
    fk_user_expense_validator integer,
    fk_user_holiday_validator integer,
    idpers1 varchar(128),
    idpers2 varchar(128),
    idpers3 varchar(128),
    note_public text,
    note_private text,
    model_pdf varchar(255) DEFAULT NULL,
    last_main_doc varchar(255),
    datelastlogin timestamp,
    datepreviouslogin timestamp,
    datelastpassvalidation timestamp,
    datestartvalidity timestamp,
    dateendvalidity timestamp,
    flagdelsessionsbefore timestamp,
    iplastlogin varchar(250),
    ippreviouslogin varchar(250),
    ldap_sid varchar(255) DEFAULT NULL,
    openid varchar(255),
    statut smallint DEFAULT 1,
    photo varchar(255),
    lang varchar(6),
    color varchar(6),
    barcode varchar(255) DEFAULT NULL,
    fk_barcode_type integer DEFAULT 0,
    accountancy_code varchar(32),
    nb_holiday integer DEFAULT 0,
    thm numeric(24,8),
    tjm numeric(24,8),
    salary numeric(24,8),
    salaryextra numeric(24,8),
    dateemployment date,
    dateemploymentend date,
    weeklyhours numeric(16,8),
    import_key varchar(14),
    default_range integer,
    default_c_exp_tax_cat integer,
    national_registration_number varchar(50),
    fk_warehouse integer
);

CREATE TABLE llx_usergroup (
    rowid serial PRIMARY KEY,
    nom varchar(180) NOT NULL,
    entity integer DEFAULT 1 NOT NULL,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    note text,
    model_pdf varchar(255) DEFAULT NULL
);

CREATE TABLE llx_usergroup_rights (
    rowid serial PRIMARY KEY,
    entity integer DEFAULT 1 NOT NULL,
    fk_usergroup integer NOT NULL,
    fk_id integer NOT NULL
);

CREATE TABLE llx_usergroup_user (
    rowid serial PRIMARY KEY,
    entity integer DEFAULT 1 NOT NULL,
    fk_user integer NOT NULL,
    fk_usergroup integer NOT NULL
);

CREATE TABLE llx_categorie_user (
    fk_categorie integer NOT NULL,
    fk_user integer NOT NULL,
    import_key varchar(14)
);

CREATE TABLE llx_user_employment (
    rowid serial PRIMARY KEY,
    entity integer DEFAULT 1 NOT NULL,
    ref varchar(50),
    ref_ext varchar(50),
    fk_user integer,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    fk_user_creat integer,
    fk_user_modif integer,
    job varchar(128),
    status integer NOT NULL,
    salary numeric(24,8),
    salaryextra numeric(24,8),
    weeklyhours numeric(16,8),
    dateemployment date,
    dateemploymentend date
);

CREATE TABLE llx_user_extrafields (
    rowid serial PRIMARY KEY,
    tms timestamp DEFAULT now() NOT NULL,
    fk_object integer NOT NULL,
    import_key varchar(14)
);

CREATE TABLE llx_rights_def (
    id integer NOT NULL,
    entity integer DEFAULT 1 NOT NULL,
    libelle varchar(255),
    module varchar(64),
    module_origin varchar(64),
    module_position integer DEFAULT 0 NOT NULL,
    family_position integer DEFAULT 0 NOT NULL,
    perms varchar(50),
    subperms varchar(50),
    type varchar(1),
    bydefault smallint DEFAULT 0,
    enabled text,
    PRIMARY KEY (id, entity)
);

CREATE TABLE llx_user_rights (
    rowid serial PRIMARY KEY,
    entity integer DEFAULT 1 NOT NULL,
    fk_user integer NOT NULL,
    fk_id integer NOT NULL
);

CREATE TABLE llx_user_param (
    fk_user integer NOT NULL,
    entity integer DEFAULT 1 NOT NULL,
    param varchar(180) NOT NULL,
    value text NOT NULL
);

CREATE TABLE llx_const (
    rowid serial PRIMARY KEY,
    name varchar(180) NOT NULL,
    entity integer DEFAULT 1 NOT NULL,
    value text NOT NULL,
    type varchar(64) DEFAULT 'string',
    visible smallint DEFAULT 1 NOT NULL,
    note text,
    tms timestamp DEFAULT now() NOT NULL
);

CREATE TABLE llx_societe (
    rowid serial PRIMARY KEY,
    nom varchar(128),
    name_alias varchar(128),
    entity integer DEFAULT 1 NOT NULL,
    ref_ext varchar(255),
    statut smallint DEFAULT 0,
    parent integer,
    status smallint DEFAULT 1,
    code_client varchar(24),
    code_fournisseur varchar(24),
    code_compta varchar(24),
    code_compta_fournisseur varchar(24),
    address varchar(255),
    zip varchar(25),
    town varchar(50),
    fk_departement integer DEFAULT 0,
    fk_pays integer DEFAULT 0,
    phone varchar(20),
    fax varchar(20),
    url varchar(255),
    email varchar(128),
    fk_effectif integer DEFAULT 0,
    fk_typent integer,
    fk_forme_juridique integer DEFAULT 0,
    siren varchar(128),
    siret varchar(128),
    ape varchar(128),
    tva_intra varchar(20),
    capital numeric(24,8) DEFAULT NULL,
    fk_stcomm integer DEFAULT 0 NOT NULL,
    note_private text,
    note_public text,
    prefix_comm varchar(5),
    client smallint DEFAULT 0,
    fournisseur smallint DEFAULT 0,
    customer_bad smallint DEFAULT 0,
    mode_reglement smallint,
    cond_reglement smallint,
    tva_assuj smallint DEFAULT 1,
    barcode varchar(180),
    fk_barcode_type integer DEFAULT 0,
    default_lang varchar(6),
    logo varchar(255) DEFAULT NULL,
    tms timestamp DEFAULT now() NOT NULL,
    datec timestamp,
    fk_user_creat integer,
    fk_user_modif integer,
    fk_multicurrency integer,
    multicurrency_code varchar(3),
    import_key varchar(14)
);

CREATE TABLE llx_socpeople (
    rowid serial PRIMARY KEY,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    fk_soc integer,
    entity integer DEFAULT 1 NOT NULL,
    ref_ext varchar(255),
    civility varchar(6),
    lastname varchar(50),
    firstname varchar(50),
    address varchar(255),
    zip varchar(25),
    town varchar(255),
    fk_pays integer DEFAULT 0,
    birthday date,
    poste varchar(255),
    phone varchar(30),
    phone_perso varchar(30),
    phone_mobile varchar(30),
    fax varchar(30),
    email varchar(255),
    no_email smallint DEFAULT 0 NOT NULL,
    priv smallint DEFAULT 0 NOT NULL,
    fk_stcommcontact integer DEFAULT 0 NOT NULL,
    fk_user_creat integer DEFAULT 0,
    fk_user_modif integer,
    note_private text,
    note_public text,
    default_lang varchar(6),
    import_key varchar(14),
    statut smallint DEFAULT 1 NOT NULL
);

CREATE TABLE llx_facture (
    rowid serial PRIMARY KEY,
    ref varchar(30) NOT NULL,
    entity integer DEFAULT 1 NOT NULL,
    ref_ext varchar(255),
    ref_client varchar(255),
    type smallint DEFAULT 0 NOT NULL,
    subtype smallint,
    fk_soc integer NOT NULL,
    datec timestamp,
    datef date,
    date_pointoftax date,
    date_valid date,
    tms timestamp DEFAULT now() NOT NULL,
    date_closing timestamp,
    paye smallint DEFAULT 0 NOT NULL,
    remise_percent real DEFAULT 0,
    remise_absolue real DEFAULT 0,
    remise real DEFAULT 0,
    close_code varchar(16),
    close_missing_amount numeric(24,8),
    close_note varchar(128),
    total_tva numeric(24,8) DEFAULT 0,
    localtax1 numeric(24,8) DEFAULT 0,
    localtax2 numeric(24,8) DEFAULT 0,
    revenuestamp numeric(24,8) DEFAULT 0,
    total_ht numeric(24,8) DEFAULT 0,
    total_ttc numeric(24,8) DEFAULT 0,
    fk_statut smallint DEFAULT 0 NOT NULL,
    fk_user_author integer,
    fk_user_modif integer,
    fk_user_valid integer,
    fk_user_closing integer,
    module_source varchar(32),
    pos_source varchar(32),
    fk_fac_rec_source integer,
    fk_facture_source integer,
    fk_projet integer,
    increment varchar(10),
    fk_account integer,
    fk_currency varchar(3),
    fk_cond_reglement integer DEFAULT 1 NOT NULL,
    fk_mode_reglement integer,
    date_lim_reglement date,
    note_private text,
    note_public text,
    model_pdf varchar(255),
    last_main_doc varchar(255),
    import_key varchar(14),
    extraparams varchar(255),
    fk_multicurrency integer,
    multicurrency_code varchar(3),
    multicurrency_tx numeric(24,8) DEFAULT 1,
    multicurrency_total_ht numeric(24,8) DEFAULT 0,
    multicurrency_total_tva numeric(24,8) DEFAULT 0,
    multicurrency_total_ttc numeric(24,8) DEFAULT 0
);

CREATE TABLE llx_facturedet (
    rowid serial PRIMARY KEY,
    fk_facture integer NOT NULL,
    fk_parent_line integer,
    fk_product integer,
    label varchar(255) DEFAULT NULL,
    description text,
    vat_src_code varchar(10) DEFAULT '',
    tva_tx numeric(7,4),
    localtax1_tx numeric(7,4) DEFAULT 0,
    localtax1_type varchar(10),
    localtax2_tx numeric(7,4) DEFAULT 0,
    localtax2_type varchar(10),
    qty real,
    remise_percent real DEFAULT 0,
    remise real DEFAULT 0,
    fk_remise_except integer,
    subprice numeric(24,8),
    price numeric(24,8),
    total_ht numeric(24,8),
    total_tva numeric(24,8),
    total_localtax1 numeric(24,8) DEFAULT 0,
    total_localtax2 numeric(24,8) DEFAULT 0,
    total_ttc numeric(24,8),
    product_type integer DEFAULT 0,
    date_start timestamp,
    date_end timestamp,
    info_bits integer DEFAULT 0,
    buy_price_ht numeric(24,8) DEFAULT 0,
    special_code integer DEFAULT 0,
    rang integer DEFAULT 0,
    fk_unit integer,
    import_key varchar(14),
    fk_code_ventilation integer DEFAULT 0 NOT NULL,
    situation_percent real DEFAULT 100,
    fk_user_author integer,
    fk_user_modif integer,
    fk_multicurrency integer,
    multicurrency_code varchar(3),
    multicurrency_subprice numeric(24,8) DEFAULT 0,
    multicurrency_total_ht numeric(24,8) DEFAULT 0,
    multicurrency_total_tva numeric(24,8) DEFAULT 0,
    multicurrency_total_ttc numeric(24,8) DEFAULT 0,
    ref_ext varchar(255) DEFAULT NULL
);

CREATE TABLE llx_bank_account (
    rowid serial PRIMARY KEY,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    ref varchar(12) NOT NULL,
    label varchar(30) NOT NULL,
    entity integer DEFAULT 1 NOT NULL,
    fk_user_author integer,
    fk_user_modif integer,
    bank varchar(60),
    code_banque varchar(128),
    code_guichet varchar(6),
    number varchar(255),
    cle_rib varchar(5),
    bic varchar(11),
    iban_prefix varchar(34),
    country_iban varchar(2),
    cle_iban varchar(2),
    domiciliation varchar(255),
    state_id integer,
    fk_pays integer NOT NULL,
    proprio varchar(60),
    owner_address varchar(255),
    courant smallint DEFAULT 0 NOT NULL,
    clos smallint DEFAULT 0 NOT NULL,
    rappro smallint DEFAULT 1,
    url varchar(128),
    account_number varchar(32),
    fk_accountancy_journal integer,
    currency_code varchar(3) NOT NULL,
    min_allowed integer DEFAULT 0,
    min_desired integer DEFAULT 0,
    comment text,
    note_public text,
    import_key varchar(14)
);

CREATE TABLE llx_bank (
    rowid serial PRIMARY KEY,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    datev date,
    dateo date,
    amount numeric(24,8) DEFAULT 0 NOT NULL,
    amount_main_currency numeric(24,8),
    label varchar(255),
    fk_account integer,
    fk_user_author integer,
    fk_user_rappro integer,
    fk_type varchar(6),
    num_releve varchar(50),
    num_chq varchar(50),
    numero_compte varchar(32),
    rappro smallint DEFAULT 0,
    note text,
    fk_bordereau integer DEFAULT 0,
    "position" integer DEFAULT 0,
    banque varchar(255),
    emetteur varchar(255),
    author varchar(40),
    origin_id integer,
    origin_type varchar(64),
    import_key varchar(14)
);

CREATE TABLE llx_paiement (
    rowid serial PRIMARY KEY,
    ref varchar(30),
    ref_ext varchar(255),
    entity integer DEFAULT 1 NOT NULL,
    datec timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    datep timestamp,
    amount numeric(24,8) DEFAULT 0,
    multicurrency_amount numeric(24,8) DEFAULT 0,
    fk_paiement integer NOT NULL,
    num_paiement varchar(50),
    note text,
    ext_payment_id varchar(255),
    ext_payment_site varchar(128),
    fk_bank integer DEFAULT 0 NOT NULL,
    fk_user_creat integer,
    fk_user_modif integer,
    statut smallint DEFAULT 0 NOT NULL,
    fk_export_compta integer DEFAULT 0 NOT NULL,
    pos_change numeric(24,8) DEFAULT 0
);

CREATE TABLE llx_paiement_facture (
    rowid serial PRIMARY KEY,
    fk_paiement integer,
    fk_facture integer,
    amount numeric(24,8) DEFAULT 0,
    multicurrency_code varchar(3),
    multicurrency_tx numeric(24,8) DEFAULT 1,
    multicurrency_amount numeric(24,8) DEFAULT 0
);

CREATE TABLE llx_cronjob (
    rowid serial PRIMARY KEY,
    tms timestamp DEFAULT now() NOT NULL,
    datec timestamp,
    jobtype varchar(10) NOT NULL,
    label varchar(255) NOT NULL,
    command varchar(255),
    classesname varchar(255),
    objectname varchar(255),
    methodename varchar(255),
    params text,
    md5params varchar(32),
    module_name varchar(255),
    priority integer DEFAULT 0,
    datelastrun timestamp,
    datenextrun timestamp,
    datestart timestamp,
    dateend timestamp,
    datelastresult timestamp,
    lastresult text,
    lastoutput text,
    unitfrequency varchar(255) DEFAULT '3600' NOT NULL,
    frequency integer DEFAULT 0 NOT NULL,
    maxrun integer DEFAULT 0 NOT NULL,
    nbrun integer,
    autodelete integer DEFAULT 0,
    status integer DEFAULT 1 NOT NULL,
    processing integer DEFAULT 0 NOT NULL,
    pid integer,
    test varchar(255) DEFAULT '1',
    fk_user_author integer,
    fk_user_mod integer,
    fk_mailing integer,
    note text,
    libname varchar(255),
    email_alert varchar(128),
    entity integer DEFAULT 0
);

CREATE TABLE llx_webhook_target (
    rowid serial PRIMARY KEY,
    ref varchar(128) NOT NULL,
    label varchar(255),
    description text,
    note_public text,
    note_private text,
    date_creation timestamp,
    tms timestamp DEFAULT now() NOT NULL,
    fk_user_creat integer NOT NULL,
    fk_user_modif integer,
    import_key varchar(14),
    status integer DEFAULT 0 NOT NULL,
    url varchar(255) NOT NULL,
    connection_method varchar(255),
    connection_data varchar(255),
    trigger_codes text
);

CREATE TABLE llx_notify_def (
    rowid serial PRIMARY KEY,
    tms timestamp DEFAULT now() NOT NULL,
    datec date,
    fk_action integer NOT NULL,
    fk_soc integer,
    fk_contact integer,
    fk_user integer,
    email varchar(255),
    threshold numeric(24,8),
    context varchar(128),
    type varchar(16) DEFAULT 'email'
);
"""

# Tables whose ``tms`` column Dolibarr refreshes with a trigger on every update.
TABLES_WITH_TMS_TRIGGER = (
    "llx_user", "llx_const", "llx_societe", "llx_socpeople", "llx_facture", "llx_bank_account",
    "llx_bank", "llx_paiement", "llx_cronjob", "llx_notify_def",
)

CONSTRAINTS = """
CREATE UNIQUE INDEX uk_user_login ON llx_user USING btree (login, entity);
CREATE UNIQUE INDEX uk_user_api_key ON llx_user USING btree (api_key);
CREATE UNIQUE INDEX uk_user_fk_socpeople ON llx_user USING btree (fk_socpeople);
CREATE UNIQUE INDEX uk_user_fk_member ON llx_user USING btree (fk_member);
CREATE INDEX idx_user_fk_societe ON llx_user USING btree (fk_soc);
CREATE UNIQUE INDEX uk_user_rights ON llx_user_rights USING btree (entity, fk_user, fk_id);
CREATE UNIQUE INDEX uk_usergroup_name ON llx_usergroup USING btree (nom, entity);
CREATE UNIQUE INDEX uk_usergroup_rights ON llx_usergroup_rights USING btree (entity, fk_usergroup, fk_id);
CREATE UNIQUE INDEX uk_usergroup_user ON llx_usergroup_user USING btree (entity, fk_user, fk_usergroup);
CREATE UNIQUE INDEX uk_user_param ON llx_user_param USING btree (fk_user, param, entity);
CREATE UNIQUE INDEX uk_const ON llx_const USING btree (name, entity);

CREATE UNIQUE INDEX uk_societe_code_client ON llx_societe USING btree (code_client, entity);
CREATE UNIQUE INDEX uk_societe_code_fournisseur ON llx_societe USING btree (code_fournisseur, entity);
CREATE UNIQUE INDEX uk_societe_prefix_comm ON llx_societe USING btree (prefix_comm, entity);
CREATE UNIQUE INDEX uk_societe_barcode ON llx_societe USING btree (barcode, fk_barcode_type, entity);
CREATE INDEX idx_societe_nom ON llx_societe USING btree (nom);
CREATE INDEX idx_societe_pays ON llx_societe USING btree (fk_pays);
CREATE INDEX idx_societe_user_creat ON llx_societe USING btree (fk_user_creat);
CREATE INDEX idx_socpeople_fk_soc ON llx_socpeople USING btree (fk_soc);
CREATE INDEX idx_socpeople_lastname ON llx_socpeople USING btree (lastname);

CREATE UNIQUE INDEX uk_facture_ref ON llx_facture USING btree (ref, entity);
CREATE INDEX idx_facture_datef ON llx_facture USING btree (datef);
CREATE INDEX idx_facture_fk_soc ON llx_facture USING btree (fk_soc);
CREATE INDEX idx_facture_fk_statut ON llx_facture USING btree (fk_statut);
CREATE INDEX idx_facture_fk_user_author ON llx_facture USING btree (fk_user_author);
CREATE INDEX idx_facture_tms ON llx_facture USING btree (tms);
CREATE INDEX idx_facturedet_fk_facture ON llx_facturedet USING btree (fk_facture);
CREATE INDEX idx_facturedet_fk_product ON llx_facturedet USING btree (fk_product);
CREATE INDEX idx_facturedet_fk_code_ventilation ON llx_facturedet USING btree (fk_code_ventilation);

CREATE UNIQUE INDEX uk_bank_account_label ON llx_bank_account USING btree (label, entity);
CREATE INDEX idx_bank_dateo ON llx_bank USING btree (dateo);
CREATE INDEX idx_bank_datev ON llx_bank USING btree (datev);
CREATE INDEX idx_bank_fk_account ON llx_bank USING btree (fk_account);
CREATE INDEX idx_bank_num_releve ON llx_bank USING btree (num_releve);
CREATE INDEX idx_bank_rappro ON llx_bank USING btree (rappro);
CREATE UNIQUE INDEX uk_paiement_facture ON llx_paiement_facture USING btree (fk_paiement, fk_facture);
CREATE INDEX idx_paiement_facture_fk_facture ON llx_paiement_facture USING btree (fk_facture);
CREATE INDEX idx_paiement_facture_fk_paiement ON llx_paiement_facture USING btree (fk_paiement);

CREATE UNIQUE INDEX uk_cronjob ON llx_cronjob USING btree (label, entity);
CREATE INDEX idx_cronjob_status ON llx_cronjob USING btree (status);
CREATE INDEX idx_cronjob_datenextrun ON llx_cronjob USING btree (datenextrun);
CREATE INDEX idx_webhook_target_ref ON llx_webhook_target USING btree (ref);
CREATE INDEX idx_webhook_target_status ON llx_webhook_target USING btree (status);

ALTER TABLE llx_user_rights ADD CONSTRAINT fk_user_rights_fk_user_user
    FOREIGN KEY (fk_user) REFERENCES llx_user(rowid) DEFERRABLE;
ALTER TABLE llx_socpeople ADD CONSTRAINT fk_socpeople_fk_soc
    FOREIGN KEY (fk_soc) REFERENCES llx_societe(rowid) DEFERRABLE;
ALTER TABLE llx_socpeople ADD CONSTRAINT fk_socpeople_user_creat_user_rowid
    FOREIGN KEY (fk_user_creat) REFERENCES llx_user(rowid) DEFERRABLE;
ALTER TABLE llx_facture ADD CONSTRAINT fk_facture_fk_soc
    FOREIGN KEY (fk_soc) REFERENCES llx_societe(rowid) DEFERRABLE;
ALTER TABLE llx_facture ADD CONSTRAINT fk_facture_fk_user_author
    FOREIGN KEY (fk_user_author) REFERENCES llx_user(rowid) DEFERRABLE;
ALTER TABLE llx_facture ADD CONSTRAINT fk_facture_fk_user_valid
    FOREIGN KEY (fk_user_valid) REFERENCES llx_user(rowid) DEFERRABLE;
ALTER TABLE llx_facture ADD CONSTRAINT fk_facture_fk_facture_source
    FOREIGN KEY (fk_facture_source) REFERENCES llx_facture(rowid) DEFERRABLE;
ALTER TABLE llx_facturedet ADD CONSTRAINT fk_facturedet_fk_facture
    FOREIGN KEY (fk_facture) REFERENCES llx_facture(rowid) DEFERRABLE;
ALTER TABLE llx_paiement_facture ADD CONSTRAINT fk_paiement_facture_fk_facture
    FOREIGN KEY (fk_facture) REFERENCES llx_facture(rowid) DEFERRABLE;
ALTER TABLE llx_paiement_facture ADD CONSTRAINT fk_paiement_facture_fk_paiement
    FOREIGN KEY (fk_paiement) REFERENCES llx_paiement(rowid) DEFERRABLE;
ALTER TABLE llx_webhook_target ADD CONSTRAINT llx_webhook_target_fk_user_creat
    FOREIGN KEY (fk_user_creat) REFERENCES llx_user(rowid) DEFERRABLE;
"""


def tms_triggers() -> str:
    """Return the ``update_customer_modtime`` triggers, named as Dolibarr names them on every table."""
    statements = [
        f"CREATE TRIGGER update_customer_modtime BEFORE UPDATE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION update_modified_column_tms();"
        for table in TABLES_WITH_TMS_TRIGGER
    ]
    return "\n".join(statements)
