"""Configuration rows of the generated prod: rights, consts, users, jobs, hooks and accounts.

Ids and names of rights, consts and scheduled jobs are Dolibarr 20.0.2's own. Values
look like a production instance: live payment modes, a mail server, an active webhook
and a notification subscription. Every secret is fake, and every host is loopback.
"""

from __future__ import annotations

import json

# Fixed timestamp of the generated instance's install, so that two runs store equal rows.
INSTALL_TIME = "2024-01-08 09:12:17"

COMPANY_NAME = "ACME Lab SARL"
LOGO_NAME = "acme-lab-logo.png"
LOGO_SMALL_NAME = "acme-lab-logo_small.png"
LOGO_MINI_NAME = "acme-lab-logo_mini.png"

ADMIN_LOGIN = "admin"
ADMIN_ID = 1

# (rowid, login, lastname, firstname, email) of the users next to ``admin``. Their
# passwords are random and discarded: the lab logs in as ``admin`` only.
NORMAL_USERS = (
    (2, "jdoe", "Doe", "John", "john.doe@acme-lab.example"),
    (3, "asmith", "Smith", "Alice", "alice.smith@acme-lab.example"),
    (4, "compta", "Comptable", "Claire", "compta@acme-lab.example"),
    (5, "crm_integration", "CRM Integration", None, None),
)

# Right ids that each normal user holds, by login.
NORMAL_USER_RIGHTS = {
    "jdoe": (11, 111, 121),
    "asmith": (11, 12, 14, 16, 111, 121, 122, 281, 282),
    "compta": (11, 16, 111, 112, 114, 115, 121, 1321),
    "crm_integration": (11, 121),
}

# (id, libelle, module, module_position, perms, subperms, type) as Dolibarr 20.0.2's
# module descriptors declare them. A right without subperms stores an empty string.
# Every right has entity 1, enabled '1' and bydefault 0.
RIGHTS = (
    (11, "Read invoices", "facture", 11, "lire", "", "a"),
    (12, "Create and update invoices", "facture", 11, "creer", "", "a"),
    (13, "Devalidate invoices", "facture", 11, "invoice_advance", "unvalidate", "a"),
    (14, "Validate invoices", "facture", 11, "invoice_advance", "validate", "a"),
    (15, "Send invoices by email", "facture", 11, "invoice_advance", "send", "a"),
    (16, "Issue payments on invoices", "facture", 11, "paiement", "", "a"),
    (19, "Delete invoices", "facture", 11, "supprimer", "", "a"),
    (111, "Read bank account and transactions", "banque", 51, "lire", "", "r"),
    (112, "Creer/modifier montant/supprimer ecriture bancaire", "banque", 51, "modifier", "", "w"),
    (113, "Configurer les comptes bancaires (creer, gerer categories)", "banque", 51, "configurer", "", "a"),
    (114, "Rapprocher les ecritures bancaires", "banque", 51, "consolidate", "", "w"),
    (115, "Exporter transactions et releves", "banque", 51, "export", "", "r"),
    (116, "Virements entre comptes", "banque", 51, "transfer", "", "w"),
    (117, "Gerer les envois de cheques", "banque", 51, "cheque", "", "w"),
    (121, "Read third parties", "societe", 9, "lire", "", "r"),
    (122, "Create and update third parties", "societe", 9, "creer", "", "w"),
    (125, "Delete third parties", "societe", 9, "supprimer", "", "d"),
    (126, "Export third parties", "societe", 9, "export", "", "r"),
    (130, "Modify thirdparty information payment", "societe", 9, "thirdparty_paymentinformation_advance",
     "write", "w"),
    (221, "Consulter les mailings", "mailing", 23, "lire", "", "r"),
    (222, "Creer/modifier les mailings (sujet, destinataires...)", "mailing", 23, "creer", "", "w"),
    (223, "Valider les mailings (permet leur envoi)", "mailing", 23, "valider", "", "w"),
    (229, "Supprimer les mailings", "mailing", 23, "supprimer", "", "d"),
    (251, "Read information of other users, groups and permissions", "user", 5, "user", "lire", "w"),
    (252, "Read permissions of other users", "user", 5, "user_advance", "readperms", "w"),
    (253, "Create/modify internal and external users, groups and permissions", "user", 5, "user", "creer",
     "w"),
    (254, "Create/modify external users only", "user", 5, "user_advance", "write", "w"),
    (255, "Modify the password of other users", "user", 5, "user", "password", "w"),
    (256, "Delete or disable other users", "user", 5, "user", "supprimer", "w"),
    (262, "Read all third parties (and their objects) by internal users (otherwise only if commercial "
     "contact). Not effective for external users (limited to themselves).", "societe", 9, "client", "voir",
     "r"),
    (281, "Read contacts", "societe", 9, "contact", "lire", "r"),
    (282, "Create and update contact", "societe", 9, "contact", "creer", "w"),
    (283, "Delete contacts", "societe", 9, "contact", "supprimer", "d"),
    (286, "Export contacts", "societe", 9, "contact", "export", "d"),
    (341, "Read its own permissions", "user", 5, "self_advance", "readperms", "w"),
    (342, "Create/modify of its own user", "user", 5, "self", "creer", "w"),
    (343, "Modify its own password", "user", 5, "self", "password", "w"),
    (344, "Modify its own permissions", "user", 5, "self_advance", "writeperms", "w"),
    (351, "Read groups", "user", 5, "group_advance", "read", "w"),
    (352, "Read permissions of groups", "user", 5, "group_advance", "readperms", "w"),
    (353, "Create/modify groups and permissions", "user", 5, "group_advance", "write", "w"),
    (354, "Delete groups", "user", 5, "group_advance", "delete", "w"),
    (358, "Export all users", "user", 5, "user", "export", "w"),
    (1201, "Read exports", "export", 72, "lire", "", "r"),
    (1202, "Creeate/modify export", "export", 72, "creer", "", "w"),
    (1251, "Run mass imports of external data (data load)", "import", 70, "run", "", "r"),
    (1321, "Export customer invoices, attributes and payments", "facture", 11, "facture", "export", "r"),
    (1322, "Re-open a fully paid invoice", "facture", 11, "invoice_advance", "reopen", "r"),
    (2401, "Read actions/tasks linked to his account", "agenda", 16, "myactions", "read", "r"),
    (2402, "Create/modify actions/tasks linked to his account", "agenda", 16, "myactions", "create", "w"),
    (2403, "Delete actions/tasks linked to his account", "agenda", 16, "myactions", "delete", "w"),
    (2411, "Read actions/tasks of others", "agenda", 16, "allactions", "read", "r"),
    (2412, "Create/modify actions/tasks of others", "agenda", 16, "allactions", "create", "w"),
    (2413, "Delete actions/tasks of others", "agenda", 16, "allactions", "delete", "w"),
    (2414, "Export actions/tasks of others", "agenda", 16, "export", "", "w"),
    (2610, "Generate/modify users API key", "api", 24, "apikey", "generate", "w"),
    (23001, "Read cron jobs", "cron", 50, "read", "", "w"),
    (23002, "Create cron Jobs", "cron", 50, "create", "", "w"),
    (23003, "Delete cron Jobs", "cron", 50, "delete", "", "w"),
    (23004, "Execute cron Jobs", "cron", 50, "execute", "", "w"),
    (56001, "Read ticket", "ticket", 60, "read", "", "r"),
    (56002, "Create les tickets", "ticket", 60, "write", "", "w"),
    (56003, "Delete les tickets", "ticket", 60, "delete", "", "d"),
    (56004, "Manage tickets", "ticket", 60, "manage", "", "w"),
    (56006, "Export ticket", "ticket", 60, "export", "", "w"),
    (6830501, "Read Webhooks", "webhook", 90, "webhook_target", "read", "w"),
    (6830502, "Create/Update Webhooks", "webhook", 90, "webhook_target", "write", "w"),
    (6830503, "Delete Webhooks", "webhook", 90, "webhook_target", "delete", "w"),
)

# Rights of ``admin``: every right outside the user module, the set that module
# activations from the Dolibarr 20.0.2 setup pages leave to the superadmin who runs them.
ADMIN_RIGHTS = tuple(right[0] for right in RIGHTS if right[2] != "user")

# Modules on in this instance. ``MAIN_MODULE_API`` lives at entity 0 like the user module.
MODULES_AT_ENTITY_0 = ("USER", "API")
MODULES = (
    "EXPORT", "AGENDA", "IMPORT", "FCKEDITOR", "SOCIETE", "FACTURE", "BANQUE", "CRON", "STRIPE",
    "PAYPAL", "NOTIFICATION", "MAILING", "WEBHOOK", "TICKET",
)

# Agenda events recorded automatically, one const each, as after the agenda module setup.
AGENDA_EVENTS = (
    "COMPANY_CREATE", "COMPANY_MODIFY", "COMPANY_DELETE", "COMPANY_SENTBYMAIL", "CONTACT_CREATE",
    "CONTACT_MODIFY", "CONTACT_DELETE", "BILL_VALIDATE", "BILL_MODIFY", "BILL_PAYED", "BILL_CANCEL",
    "BILL_SENTBYMAIL", "BILL_UNVALIDATE", "BILL_DELETE", "USER_CREATE", "USER_MODIFY", "USER_DELETE",
    "USER_NEW_PASSWORD", "USER_ENABLEDISABLE", "TICKET_CREATE", "TICKET_MODIFY", "TICKET_CLOSE",
)

# (name, entity, value, type, visible, note) of the settings a real instance stores,
# in the order an install followed by the module setup writes them.
SETTINGS = (
    ("MAIN_FEATURES_LEVEL", 0, "0", "chaine", 1, "Level of features to show: -1=stable+deprecated, "
     "0=stable only (default), 1=stable+experimental, 2=stable+experimental+development"),
    ("MAILING_LIMIT_SENDBYWEB", 0, "25", "chaine", 1, "Number of targets to defined packet size when "
     "sending mass email"),
    ("SYSLOG_HANDLERS", 0, '["mod_syslog_file"]', "chaine", 0, "Which logger to use"),
    ("SYSLOG_FILE", 0, "DOL_DATA_ROOT/dolibarr.log", "chaine", 0, "Directory where to write log file"),
    ("SYSLOG_LEVEL", 0, "7", "chaine", 0, "Level of debug info to show"),
    ("MAIN_UPLOAD_DOC", 0, "2048", "chaine", 0, "Max size for file upload (0 means no upload allowed)"),
    ("MAIN_SIZE_LISTE_LIMIT", 0, "20", "chaine", 0, "Maximum length of lists"),
    ("MAIN_MENU_STANDARD", 0, "eldy_menu.php", "chaine", 0, "Menu manager for internal users"),
    ("MAIN_MENUFRONT_STANDARD", 0, "eldy_menu.php", "chaine", 0, "Menu manager for external users"),
    ("MAIN_DELAY_CUSTOMER_BILLS_UNPAYED", 1, "31", "chaine", 0, None),
    ("MAIN_DELAY_TRANSACTIONS_TO_CONCILIATE", 1, "62", "chaine", 0, None),
    ("MAILING_EMAIL_FROM", 1, "no-reply@acme-lab.example", "chaine", 0, None),
    ("DATABASE_PWD_ENCRYPTED", 1, "1", "chaine", 0, None),
    ("MAIN_SECURITY_SALT", 0, "20240108091217", "chaine", 0, None),
    ("MAIN_SECURITY_HASH_ALGO", 0, "password_hash", "chaine", 0, None),
    ("MAIN_VERSION_FIRST_INSTALL", 0, "20.0.2", "chaine", 0, "Dolibarr version when first install"),
    ("MAIN_VERSION_LAST_INSTALL", 0, "20.0.2", "chaine", 0, "Dolibarr version when last install"),
    ("MAIN_LANG_DEFAULT", 1, "en_US", "chaine", 0, "Default language"),
    ("MAIN_INFO_SOCIETE_COUNTRY", 1, "1:FR:France", "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_NOM", 1, COMPANY_NAME, "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_ADDRESS", 1, "12 rue du Lab", "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_TOWN", 1, "Paris", "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_ZIP", 1, "75001", "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_MAIL", 1, "billing@acme-lab.example", "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_LOGO", 1, LOGO_NAME, "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_LOGO_SMALL", 1, LOGO_SMALL_NAME, "chaine", 0, None),
    ("MAIN_INFO_SOCIETE_LOGO_MINI", 1, LOGO_MINI_NAME, "chaine", 0, None),
    ("MAIN_MONNAIE", 1, "EUR", "chaine", 0, None),
    ("SOCIETE_FISCAL_MONTH_START", 1, "0", "chaine", 0, None),
    ("SOCIETE_CODECLIENT_ADDON", 1, "mod_codeclient_monkey", "chaine", 0, "Module to control third parties codes"),
    ("FACTURE_ADDON", 1, "mod_facture_terre", "chaine", 0, "Name of numbering numerotation rules of invoice"),
    ("FACTURE_ADDON_PDF", 1, "sponge", "chaine", 0, "Name of PDF model of invoice"),
    ("TICKET_NOTIFICATION_EMAIL_FROM", 1, "robot@acme-lab.example", "chaine", 0, None),
    ("STRIPE_TEST_PUBLISHABLE_KEY", 1, "pk_test_LabFakeKey0000000000000000", "chaine", 0, None),
    ("STRIPE_TEST_SECRET_KEY", 1, "sk_test_LabFakeKey0000000000000000", "chaine", 0, None),
    ("STRIPE_LIVE_PUBLISHABLE_KEY", 1, "pk_live_LabFakeKey0000000000000000", "chaine", 0, None),
    ("STRIPE_LIVE_SECRET_KEY", 1, "sk_live_LabFakeKey0000000000000000", "chaine", 0, None),
    ("STRIPE_LIVE_WEBHOOK_KEY", 1, "whsec_LabFakeKey0000000000", "chaine", 0, None),
    ("STRIPE_BANK_ACCOUNT_FOR_PAYMENTS", 1, "1", "chaine", 0, None),
    ("STRIPE_LIVE", 1, "1", "chaine", 0, None),
    ("PAYPAL_API_USER", 1, "paypal-api.acme-lab.example", "chaine", 0, None),
    ("PAYPAL_API_PASSWORD", 1, "LabFakePaypalPassword", "chaine", 0, None),
    ("PAYPAL_API_SIGNATURE", 1, "LabFakePaypalSignature", "chaine", 0, None),
    ("PAYPAL_BANK_ACCOUNT_FOR_PAYMENTS", 1, "1", "chaine", 0, None),
    ("PAYPAL_API_INTEGRAL_OR_PAYPALONLY", 1, "integral", "chaine", 0, None),
    ("ONLINE_PAYMENT_SENDEMAIL", 1, "billing@acme-lab.example", "chaine", 0, None),
    ("CRON_KEY", 0, "LabFakeCronKey00000000000000000", "chaine", 0, None),
    ("NOTIFICATION_EMAIL_FROM", 1, "notify@acme-lab.example", "chaine", 0, None),
    ("MAIN_FIRST_PING_OK_DATE", 1, "20240108091728", "chaine", 0, None),
    ("MAIN_FIRST_PING_OK_ID", 1, "5b1c0f3e9a7d4c2b8e6f1a0d3c5b7e9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1f", "chaine", 0,
     None),
    ("MAIN_DISABLE_ALL_MAILS", 1, "0", "chaine", 0, None),
    ("MAIN_MAIL_SENDMODE", 1, "smtps", "chaine", 0, None),
    ("MAIN_MAIL_SMTP_SERVER", 1, "localhost", "chaine", 0, None),
    ("MAIN_MAIL_SMTP_PORT", 1, "2525", "chaine", 0, None),
    ("MAIN_MAIL_SMTPS_ID", 1, "billing@acme-lab.example", "chaine", 0, None),
    ("MAIN_MAIL_SMTPS_PW", 1, "LabFakeSmtpPassword", "chaine", 0, None),
    ("MAIN_MAIL_SMTPS_AUTH_TYPE", 1, "LOGIN", "chaine", 0, None),
    ("MAIN_MAIL_EMAIL_TLS", 1, "0", "chaine", 0, None),
    ("MAIN_MAIL_EMAIL_STARTTLS", 1, "0", "chaine", 0, None),
    ("MAIN_MAIL_EMAIL_FROM", 1, "billing@acme-lab.example", "chaine", 0, None),
    ("MAIN_MAIL_DEFAULT_FROMTYPE", 1, "user", "chaine", 0, None),
)

# (label, classesname, objectname, methodename, params, module_name, priority,
#  unitfrequency, frequency, status, test, entity) of the jobs that modules register.
CRON_JOBS = (
    ("SendEmailsReminders", "comm/action/class/actioncomm.class.php", "ActionComm", "sendEmailsReminder",
     None, "agenda", 10, "60", 5, 1, 'isModEnabled("agenda")', 1),
    ("RecurringInvoicesJob", "compta/facture/class/facture-rec.class.php", "FactureRec",
     "createRecurringInvoices", None, "facture", 51, "86400", 1, 1, "$conf->facture->enabled", 1),
    ("SendEmailsRemindersOnInvoiceDueDate", "compta/facture/class/facture.class.php", "Facture",
     "sendEmailsRemindersOnInvoiceDueDate", "10,all,EmailTemplateCode,duedate", "facture", 50, "86400", 1, 1,
     "$conf->facture->enabled", 1),
    ("PurgeDeleteTemporaryFilesShort", "core/class/utils.class.php", "Utils", "purgeFiles",
     "tempfilesold+logfiles", "cron", 50, "604800", 2, 1, "1", 0),
    ("MakeLocalDatabaseDumpShort", "core/class/utils.class.php", "Utils", "dumpDatabase",
     "none,auto,1,auto,10,0,0", "cron", 90, "604800", 1, 0,
     "in_array($conf->db->type, array('mysql', 'mysqli'))", 0),
    ("CleanUnfinishedCronjobShort", "core/class/utils.class.php", "Utils", "cleanUnfinishedCronjob", None,
     "cron", 10, "60", 5, 0, 'getDolGlobalInt("MAIN_FEATURES_LEVEL") >= 2', 0),
)

WEBHOOK_URL = "http://127.0.0.1:9/hook"
WEBHOOK_TRIGGERS = "BILL_VALIDATE,COMPANY_CREATE"

# Id of the BILL_VALIDATE row of Dolibarr's llx_c_action_trigger, the event that
# notification subscriptions listen to.
BILL_VALIDATE_ACTION_ID = 22

# (ref, label, bank, bic, iban_prefix, courant) where courant 1 is a current account and 2 is cash.
BANK_ACCOUNTS = (
    ("BNP-MAIN", "BNP Main account", "BNP Paribas", "BNPAFRPP", "FR7630004000031234567890143", 1),
    ("CASH", "Petty cash", None, None, None, 2),
)


# Settings that Dolibarr 20.0.2 stores encrypted with the instance unique id (dolcrypt).
ENCRYPTED_SETTINGS = frozenset({
    "STRIPE_TEST_PUBLISHABLE_KEY", "STRIPE_TEST_SECRET_KEY", "STRIPE_LIVE_PUBLISHABLE_KEY",
    "STRIPE_LIVE_SECRET_KEY", "STRIPE_LIVE_WEBHOOK_KEY", "PAYPAL_API_PASSWORD", "CRON_KEY", "MAIN_MAIL_SMTPS_PW",
})


def module_note(author_id: int) -> str:
    """Return the JSON note that Dolibarr stores with each ``MAIN_MODULE_*`` const."""
    return json.dumps(
        {"authorid": str(author_id), "ip": "127.0.0.1", "lastactivationversion": "dolibarr"},
        separators=(",", ":"),
    )


def const_rows() -> list[tuple]:
    """Return the ``llx_const`` rows as (name, entity, value, type, visible, note)."""
    rows = [(f"MAIN_MODULE_{name}", 0, "1", "string", 0, module_note(0)) for name in MODULES_AT_ENTITY_0]
    rows += [(f"MAIN_MODULE_{name}", 1, "1", "string", 0, module_note(ADMIN_ID)) for name in MODULES]
    rows += [(f"MAIN_AGENDA_ACTIONAUTO_{event}", 1, "1", "chaine", 0, None) for event in AGENDA_EVENTS]
    rows += list(SETTINGS)
    return rows
