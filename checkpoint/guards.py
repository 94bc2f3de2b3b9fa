"""Guards: the settings that keep a sandbox copy of prod from reaching the outside world.

A guard is data: a name, a description, SQL that applies it, and a query that returns
true while it is in effect. Applying a guard twice changes nothing the second time.
The names and values come from Dolibarr 20.0.2, observed on a copy of prod: mail,
notifications, webhooks and scheduled jobs reached local listeners until these
settings stopped them. The other integrations are switched off by name only.

Dolibarr reads a const from ``llx_const`` for entity 0 and for the current entity,
and the entity's row wins. A const guard therefore sets every existing row of the
name, whatever its entity, and inserts an entity 0 row when none exists.

Four SQL renderings share these definitions: ``refresh_sql`` runs inside the
restore transaction before COMMIT, ``check_only_sql`` lets the checkpoint commands
check a database without changing it, and ``apply_guards`` and ``check_guards`` run
against a live sandbox.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from checkpoint.exceptions import ConfigError

log = logging.getLogger(__name__)

GUARD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
CONST_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,179}$")
DEFAULT_APPLICATION_TITLE = "SANDBOX - not production"
CONST_NOTE = "set by dolibarr-sandbox-checkpoint guards"

# Markers that the lifecycle script looks for in psql's output.
APPLYING_MARKER = "lifecycle-guard-applying"
FAILED_MARKER = "lifecycle-guard-failed"
NOT_IN_EFFECT_MARKER = "lifecycle-guards-not-in-effect"
IN_EFFECT_MARKER = "lifecycle-guards-in-effect"

# Statements that end or split a transaction, matched at the start of a statement;
# a guard must never run them.
TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|END|ABORT|START\s+TRANSACTION|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Guard:
    """One guard: ``apply_sql`` makes it so, ``check_sql`` is a SELECT of one boolean, true when in effect."""

    name: str
    description: str
    apply_sql: str
    check_sql: str
    origin: str = "default"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "description": self.description, "origin": self.origin}


def literal(text: str) -> str:
    """Quote ``text`` as a SQL string literal; the rendered SQL sets standard_conforming_strings."""
    return "'" + text.replace("'", "''") + "'"


# -- building blocks ------------------------------------------------------------------


def set_consts(consts: dict[str, str]) -> tuple[str, str]:
    """Return (apply, check) SQL that gives every row of each const the value, inserting one if none exists."""
    statements = []
    checks = []
    for name, value in consts.items():
        quoted_name, quoted_value = literal(name), literal(value)
        statements.append(
            f"UPDATE public.llx_const SET value = {quoted_value} "
            f"WHERE name = {quoted_name} AND value IS DISTINCT FROM {quoted_value};\n"
            "INSERT INTO public.llx_const (name, entity, value, type, visible, note) "
            f"SELECT {quoted_name}, 0, {quoted_value}, 'chaine', 0, {literal(CONST_NOTE)} "
            f"WHERE NOT EXISTS (SELECT FROM public.llx_const WHERE name = {quoted_name});"
        )
        checks.append(
            f"EXISTS (SELECT FROM public.llx_const WHERE name = {quoted_name}) "
            f"AND NOT EXISTS (SELECT FROM public.llx_const WHERE name = {quoted_name} "
            f"AND value IS DISTINCT FROM {quoted_value})"
        )
    return "\n".join(statements), "SELECT " + "\n  AND ".join(checks)


def delete_consts(condition: str) -> tuple[str, str]:
    """Return (apply, check) SQL that removes the consts matching a SQL condition on ``name``."""
    return (
        f"DELETE FROM public.llx_const WHERE {condition};",
        f"SELECT NOT EXISTS (SELECT FROM public.llx_const WHERE {condition})",
    )


def _const_guard(name: str, description: str, consts: dict[str, str], origin: str = "default") -> Guard:
    apply_sql, check_sql = set_consts(consts)
    return Guard(name, description, apply_sql, check_sql, origin)


def _deleting_guard(name: str, description: str, condition: str) -> Guard:
    apply_sql, check_sql = delete_consts(condition)
    return Guard(name, description, apply_sql, check_sql)


def _status_guard(name: str, description: str, table: str, condition: str, off_value: int) -> Guard:
    """Build a guard that switches rows of ``table`` off, and is in effect when the table is absent.

    A module's table may be missing from an older or partial schema. Both statements
    reach the table only through dynamic SQL after checking that it exists, because a
    plain reference to a missing table fails when the statement is planned.
    """
    update = f"UPDATE {table} SET status = {off_value} WHERE {condition}"
    count = f"SELECT count(*) AS c FROM {table} WHERE {condition}"
    return Guard(
        name,
        description,
        f"DO $status_guard$ BEGIN IF to_regclass({literal(table)}) IS NOT NULL THEN EXECUTE {literal(update)}; "
        "END IF; END $status_guard$;",
        f"SELECT CASE WHEN to_regclass({literal(table)}) IS NULL THEN true ELSE "
        f"(xpath('/row/c/text()', query_to_xml({literal(count)}, false, true, '')))[1]::text::bigint = 0 END",
    )


# -- the default guards -----------------------------------------------------------------


def default_guards(*, catch_all_address: str = "", application_title: str = DEFAULT_APPLICATION_TITLE) -> list[Guard]:
    """Return the guards every refresh applies, in order."""
    mail = {"MAIN_DISABLE_ALL_MAILS": "1"}
    mail_description = "MAIN_DISABLE_ALL_MAILS=1 stops all mail"
    if catch_all_address:
        mail["MAIN_MAIL_FORCE_SENDTO"] = catch_all_address
        mail_description += f"; MAIN_MAIL_FORCE_SENDTO sends any mail that still leaves to {catch_all_address}"

    notifications_apply = "DELETE FROM public.llx_notify_def;\n" + delete_consts(r"name LIKE 'NOTIFICATION\_FIXEDEMAIL\_%'")[0]
    notifications_check = (
        "SELECT NOT EXISTS (SELECT FROM public.llx_notify_def) "
        r"AND NOT EXISTS (SELECT FROM public.llx_const WHERE name LIKE 'NOTIFICATION\_FIXEDEMAIL\_%')"
    )
    return [
        _const_guard("mail_off", mail_description, mail),
        Guard("notifications_off",
              "notification subscriptions (llx_notify_def) and fixed recipients (NOTIFICATION_FIXEDEMAIL_*) deleted",
              notifications_apply, notifications_check),
        _status_guard("webhooks_draft", "every webhook target set to draft (llx_webhook_target.status=0)",
                      "public.llx_webhook_target", "status <> 0", 0),
        _status_guard("cron_jobs_off", "every enabled scheduled job disabled (llx_cronjob.status 1 to 0)",
                      "public.llx_cronjob", "status = 1", 0),
        _deleting_guard("stripe_test_mode", "Stripe in test mode: STRIPE_LIVE and the STRIPE_LIVE_* keys deleted",
                        r"name = 'STRIPE_LIVE' OR name LIKE 'STRIPE\_LIVE\_%'"),
        _const_guard("paypal_sandbox_mode", "PayPal in sandbox mode (PAYPAL_API_SANDBOX=1; absent or 0 means live)",
                     {"PAYPAL_API_SANDBOX": "1"}),
        _const_guard("telemetry_off", "no ping to dolibarr.org (MAIN_FIRST_PING_OK_ID=disabled)",
                     {"MAIN_FIRST_PING_OK_ID": "disabled"}),
        _const_guard("sms_off", "all SMS off (MAIN_DISABLE_ALL_SMS=1)", {"MAIN_DISABLE_ALL_SMS": "1"}),
        _const_guard("ticket_mails_off", "ticket mails off (TICKET_DISABLE_ALL_MAILS=1)",
                     {"TICKET_DISABLE_ALL_MAILS": "1"}),
        _const_guard("agenda_reminders_off", "agenda reminders by mail off (AGENDA_REMINDER_EMAIL=0)",
                     {"AGENDA_REMINDER_EMAIL": "0"}),
        _deleting_guard("ldap_sync_off", "LDAP synchronisation off (LDAP_SYNCHRO_ACTIVE deleted)",
                        "name = 'LDAP_SYNCHRO_ACTIVE'"),
        _deleting_guard("zapier_off", "Zapier module off (MAIN_MODULE_ZAPIER deleted)", "name = 'MAIN_MODULE_ZAPIER'"),
        _deleting_guard("paybox_off", "Paybox module off (MAIN_MODULE_PAYBOX deleted)", "name = 'MAIN_MODULE_PAYBOX'"),
        _deleting_guard("external_calendars_off", "external calendars off (AGENDA_EXT_* deleted)",
                        r"name LIKE 'AGENDA\_EXT\_%'"),
        _status_guard("email_collectors_off", "every email collector disabled (llx_emailcollector_emailcollector.status=0)",
                      "public.llx_emailcollector_emailcollector", "status <> 0", 0),
        _const_guard("sandbox_title", f"UI title shows {application_title!r} (MAIN_APPLICATION_TITLE)",
                     {"MAIN_APPLICATION_TITLE": application_title}),
    ]


# -- guards from configuration ------------------------------------------------------------


def configured_guards(section: dict[str, Any]) -> tuple[Guard, ...]:
    """Validate the ``checkpoint.guards`` section and return the defaults followed by the extra guards."""
    catch_all = str(section.get("catch_all_address") or "")
    if catch_all and not re.match(r"^[^@\s]+@[^@\s]+$", catch_all):
        raise ConfigError(
            f"invalid checkpoint.guards.catch_all_address {catch_all!r}: use one mail address, such as sandbox@example.com"
        )
    title = str(section.get("application_title") or "")
    if not title.strip():
        raise ConfigError("empty checkpoint.guards.application_title: set the title shown in the sandbox's UI")

    guards = default_guards(catch_all_address=catch_all, application_title=title)
    extra = section.get("extra") or []
    if not isinstance(extra, (list, tuple)):
        raise ConfigError("invalid checkpoint.guards.extra: use a list of guards, each with name and const or apply/check")

    names = {guard.name for guard in guards}
    for index, item in enumerate(extra):
        guard = _extra_guard(item, f"checkpoint.guards.extra[{index}]")
        if guard.name in names:
            raise ConfigError(f"duplicate guard name {guard.name!r} in checkpoint.guards.extra[{index}]: rename it")
        names.add(guard.name)
        guards.append(guard)
    return tuple(guards)


def _extra_guard(item: Any, where: str) -> Guard:
    if not isinstance(item, dict):
        raise ConfigError(f"invalid {where}: use a mapping with name and const, or name, apply and check")

    name = str(item.get("name") or "")
    if not GUARD_NAME.match(name):
        raise ConfigError(f"invalid {where}.name {name!r}: use lowercase letters, digits and '_', starting with a letter")
    unknown = sorted(set(item) - {"name", "description", "const", "apply", "check"})
    if unknown:
        raise ConfigError(f"unknown setting {where}.{unknown[0]}: use name, description, const, apply or check")

    description = str(item.get("description") or "")
    if "const" in item:
        if "apply" in item or "check" in item:
            raise ConfigError(f"invalid {where}: give either const or apply and check, not both")
        consts = _const_values(item["const"], f"{where}.const")
        return _const_guard(name, description or "sets " + ", ".join(consts), consts, "configuration")

    apply_sql, check_sql = str(item.get("apply") or "").strip(), str(item.get("check") or "").strip().rstrip(";")
    if not apply_sql or not check_sql:
        raise ConfigError(
            f"invalid {where}: give const (NAME: value), or apply (SQL) and check (a SELECT of one boolean, true when in effect)"
        )
    for field, sql in (("apply", apply_sql), ("check", check_sql)):
        _reject_transaction_control(sql, f"{where}.{field}")
    if not apply_sql.endswith(";"):
        apply_sql += ";"
    return Guard(name, description or "SQL from configuration", apply_sql, check_sql, "configuration")


def _reject_transaction_control(sql: str, where: str) -> None:
    """Reject SQL that would end the restore's transaction or reach psql as a command.

    Guards run inside the transaction that replaces the sandbox, so a COMMIT there
    would publish an unguarded sandbox and a ROLLBACK would silently keep the old one.
    A backslash outside a string literal starts a psql meta-command, such as ``\\!``.
    """
    if "\\" in _without_literals(sql):
        raise ConfigError(f"invalid {where}: psql meta-commands (a backslash outside a string) are not allowed")
    for statement in _without_literals(sql).split(";"):
        found = TRANSACTION_CONTROL.match(statement)
        if not found:
            continue
        raise ConfigError(
            f"invalid {where}: {found.group(1).upper()} is not allowed, because guards run inside the "
            "restore's transaction; remove transaction control from the SQL"
        )


def _without_literals(sql: str) -> str:
    """Blank out quoted strings, dollar-quoted bodies and comments, so keywords inside them do not count."""
    sql = re.sub(r"\$([A-Za-z_]*)\$.*?\$\1\$", " ", sql, flags=re.S)
    sql = re.sub(r"'(?:[^']|'')*'", " ", sql)
    sql = re.sub(r"--[^\n]*", " ", sql)
    return re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)


def _const_values(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"invalid {where}: use a mapping of const names to values, such as {{MAIN_MODULE_X: '0'}}")
    consts = {}
    for name, const_value in value.items():
        if not CONST_NAME.match(str(name)):
            raise ConfigError(f"invalid const name {name!r} in {where}: use letters, digits and '_'")
        if const_value is None or isinstance(const_value, (dict, list)):
            raise ConfigError(f"invalid value of {name} in {where}: use a string or a number")
        if isinstance(const_value, bool):
            # YAML reads yes/no/true/false as booleans; Dolibarr stores switches as '1' and '0'.
            const_value = "1" if const_value else "0"
        consts[str(name)] = str(const_value)
    return consts


# -- SQL for the restore transaction -----------------------------------------------------------


def _dollar_tag(guards: tuple[Guard, ...] | list[Guard]) -> str:
    """Return a dollar-quote tag that no guard's SQL contains."""
    text = "".join(guard.apply_sql + guard.check_sql for guard in guards)
    tag = "$lifecycle_guards$"
    number = 0
    while tag in text:
        number += 1
        tag = f"$lifecycle_guards_{number}$"
    return tag


def refresh_sql(guards: tuple[Guard, ...] | list[Guard]) -> str:
    """Render the SQL that the lifecycle script sends after the row count check and before COMMIT.

    Before each guard's statements a SELECT prints ``lifecycle-guard-applying<TAB>name``,
    so the last such line names the guard whose statement failed. A final block raises
    ``lifecycle-guards-not-in-effect: names`` unless every check returns true, which
    rolls the whole restore back. Success prints ``lifecycle-guards-in-effect``.
    """
    # pg_restore's script empties search_path; configured SQL may name tables unqualified.
    lines = ["SET LOCAL standard_conforming_strings = on;", "SET LOCAL search_path = public;"]
    for guard in guards:
        lines.append(f"-- guard: {guard.name}")
        lines.append(f"SELECT {literal(APPLYING_MARKER)} || chr(9) || {literal(guard.name)};")
        lines.append(guard.apply_sql)
    lines.append(_check_block(guards))
    lines.append(f"SELECT {literal(IN_EFFECT_MARKER)};")
    return "\n".join(lines) + "\n"


def check_only_sql(guards: tuple[Guard, ...] | list[Guard]) -> str:
    """Render the SQL that checks the guards without applying them, for checkpoint-save and rewind.

    It names each guard in a ``-- guard: name`` line as ``refresh_sql`` does, raises
    ``lifecycle-guards-not-in-effect: names`` unless every check returns true, and
    prints ``lifecycle-guards-in-effect`` otherwise. It writes nothing.
    """
    lines = ["SET LOCAL standard_conforming_strings = on;", "SET LOCAL search_path = public;"]
    lines += [f"-- guard: {guard.name}" for guard in guards]
    lines.append(_check_block(guards))
    lines.append(f"SELECT {literal(IN_EFFECT_MARKER)};")
    return "\n".join(lines) + "\n"


def _check_block(guards: tuple[Guard, ...] | list[Guard]) -> str:
    tag = _dollar_tag(guards)
    checks = []
    for guard in guards:
        checks.append(
            "  BEGIN\n"
            f"    IF NOT coalesce(({guard.check_sql}), false) THEN\n"
            f"      not_in_effect := not_in_effect || {literal(guard.name)}::text;\n"
            "    END IF;\n"
            "  EXCEPTION WHEN OTHERS THEN\n"
            f"    RAISE EXCEPTION '{FAILED_MARKER}: the check of guard % failed: %', {literal(guard.name)}, SQLERRM;\n"
            "  END;"
        )
    return (
        f"DO {tag}\nDECLARE\n  not_in_effect text[] := ARRAY[]::text[];\nBEGIN\n"
        + "\n".join(checks)
        + "\n  IF pg_catalog.cardinality(not_in_effect) > 0 THEN\n"
        f"    RAISE EXCEPTION '{NOT_IN_EFFECT_MARKER}: %', pg_catalog.array_to_string(not_in_effect, ', ');\n"
        "  END IF;\nEND\n"
        f"{tag};"
    )


def check_query(guard: Guard) -> str:
    """Return a SELECT of one boolean: whether ``guard`` is in effect (false when its check returns NULL)."""
    return f"SELECT coalesce(({guard.check_sql}), false)"
