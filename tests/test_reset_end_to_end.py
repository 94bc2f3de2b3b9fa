"""The whole reset cycle on the lab seeded with the real Dolibarr 20.0.2 fixture.

This runs the real command line, as a user would: ``invoke lab.up`` with the fixture,
``invoke reset --yes``, then checks the database, the files and the status, and that
a later refresh disarms the agent as it does on a real Dolibarr.
"""

from __future__ import annotations

import json
import stat

import pytest

from checkpoint.lab.lab import PROD_DATABASE, SANDBOX_DATABASE
from tests.cli_helpers import fixture_lab, run_invoke
from tests.conftest import FIXTURE_ADMIN_PASSWORD
from tests.db_helpers import table_checksums

AGENT = "ai_agent_sandbox"
# Dolibarr records each login in the user's own row (its tms trigger fires too), and
# provisioning logs the admin in.
LOGIN_COLUMNS = {"llx_user": ["datelastlogin", "datepreviouslogin", "iplastlogin", "ippreviouslogin", "tms"]}
AGENT_ROWS = {
    "llx_user": f"login <> '{AGENT}'",
    "llx_user_rights": f"fk_user NOT IN (SELECT rowid FROM llx_user WHERE login = '{AGENT}')",
}

# What the default guards change, by design, so the sandbox differs from prod there:
# the consts they set or delete, the notification subscriptions they delete, and the
# status (with its tms trigger) of webhook targets, scheduled jobs and email collectors.
GUARDED_CONSTS = (
    "name NOT IN ('MAIN_DISABLE_ALL_MAILS', 'MAIN_MAIL_FORCE_SENDTO', 'STRIPE_LIVE', 'PAYPAL_API_SANDBOX',"
    " 'MAIN_FIRST_PING_OK_ID', 'MAIN_DISABLE_ALL_SMS', 'TICKET_DISABLE_ALL_MAILS', 'AGENDA_REMINDER_EMAIL',"
    " 'LDAP_SYNCHRO_ACTIVE', 'MAIN_MODULE_ZAPIER', 'MAIN_MODULE_PAYBOX', 'MAIN_APPLICATION_TITLE')"
    " AND name NOT LIKE 'NOTIFICATION\\_FIXEDEMAIL\\_%' AND name NOT LIKE 'STRIPE\\_LIVE\\_%'"
    " AND name NOT LIKE 'AGENDA\\_EXT\\_%'"
)
GUARDED_ROWS = {"llx_const": GUARDED_CONSTS, "llx_notify_def": "false"}
GUARDED_COLUMNS = {
    table: ["status", "tms"] for table in ("llx_webhook_target", "llx_cronjob", "llx_emailcollector_emailcollector")
}


@pytest.fixture(scope="module")
def lab(fixture_files):
    with fixture_lab(fixture_files, "checkpoint-e2e") as (lab, config, config_dir):

        def invoke(*args: str):
            return run_invoke(list(args), config, config_dir)

        yield lab, invoke


@pytest.fixture(scope="module")
def reset_result(lab):
    _, invoke = lab
    return invoke("reset", "--yes")


def test_reset_exits_zero(reset_result):
    assert reset_result.returncode == 0, reset_result.stdout + reset_result.stderr
    assert "RECAP reset:" in reset_result.stdout
    assert "failed=0" in reset_result.stdout


def test_sandbox_equals_prod_except_agent_and_guards(lab, reset_result):
    cluster = lab[0].cluster
    ignored = {**LOGIN_COLUMNS, **GUARDED_COLUMNS}

    prod = table_checksums(cluster, PROD_DATABASE, where=GUARDED_ROWS, ignore_columns=ignored)
    sandbox = table_checksums(cluster, SANDBOX_DATABASE, where={**AGENT_ROWS, **GUARDED_ROWS}, ignore_columns=ignored)

    assert len(prod) == 287
    assert sandbox == prod


def sandbox_const(cluster, name: str) -> list[str]:
    return cluster.psql(f"SELECT value FROM llx_const WHERE name = '{name}' ORDER BY entity", SANDBOX_DATABASE).splitlines()


def sandbox_count(cluster, sql: str) -> int:
    return int(cluster.psql(sql, SANDBOX_DATABASE).strip())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MAIN_DISABLE_ALL_MAILS", ["1"]),
        ("PAYPAL_API_SANDBOX", ["1"]),
        ("MAIN_FIRST_PING_OK_ID", ["disabled"]),
        ("MAIN_DISABLE_ALL_SMS", ["1"]),
        ("TICKET_DISABLE_ALL_MAILS", ["1"]),
        ("STRIPE_LIVE", []),
        ("LDAP_SYNCHRO_ACTIVE", []),
    ],
)
def test_refresh_sets_outbound_const(lab, reset_result, name, expected):
    assert sandbox_const(lab[0].cluster, name) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM llx_notify_def",
        "SELECT count(*) FROM llx_const WHERE name LIKE 'NOTIFICATION\\_FIXEDEMAIL\\_%'",
        "SELECT count(*) FROM llx_webhook_target WHERE status <> 0",
        "SELECT count(*) FROM llx_cronjob WHERE status = 1",
        "SELECT count(*) FROM llx_const WHERE name LIKE 'STRIPE\\_LIVE\\_%'",
        "SELECT count(*) FROM llx_const WHERE name LIKE 'AGENDA\\_EXT\\_%'",
        "SELECT count(*) FROM llx_const WHERE name = 'AGENDA_REMINDER_EMAIL' AND value <> '0'",
        "SELECT count(*) FROM llx_emailcollector_emailcollector WHERE status <> 0",
    ],
    ids=["notify_def", "fixed_recipients", "webhooks", "cron_jobs", "stripe_live_keys", "external_calendars",
         "agenda_reminders", "email_collectors"],
)
def test_refresh_leaves_no_outbound_row(lab, reset_result, sql):
    assert sandbox_count(lab[0].cluster, sql) == 0


def test_refresh_brands_sandbox_title(lab, reset_result):
    titles = sandbox_const(lab[0].cluster, "MAIN_APPLICATION_TITLE")

    assert len(titles) == 1
    assert "SANDBOX" in titles[0]


def test_status_json_says_guarded(lab, reset_result):
    document = json.loads(lab[1]("status", "--json").stdout)

    assert document["guarded"] is True
    assert document["guards_not_in_effect"] == []


def test_agent_has_exactly_configured_rights(lab, reset_result):
    cluster = lab[0].cluster

    rights = cluster.psql(
        f"SELECT r.fk_id FROM llx_user_rights r JOIN llx_user u ON u.rowid = r.fk_user"
        f" WHERE u.login = '{AGENT}' ORDER BY r.fk_id",
        SANDBOX_DATABASE,
    ).split()

    assert rights == ["111", "251"]


def test_secret_files_are_mode_600(lab, reset_result):
    agent_dir = lab[0].state_dir / "agent"

    for path in (agent_dir / "api-key", agent_dir / ".env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_status_json_says_armed(lab, reset_result):
    result = lab[1]("status", "--json")
    document = json.loads(result.stdout)

    assert result.returncode == 0
    assert document["armed"] is True
    assert document["live"] is True
    assert document["agent"] == AGENT
    assert document["reason"] == "armed"


def test_no_secret_in_reset_output(lab, reset_result):
    key = (lab[0].state_dir / "agent" / "api-key").read_text().strip()
    output = reset_result.stdout + reset_result.stderr

    assert key not in output
    assert FIXTURE_ADMIN_PASSWORD not in output


def test_second_relink_and_provision_change_nothing(lab, reset_result):
    invoke = lab[1]

    relink = invoke("relink-env", "--json")
    provision = invoke("provision", "--json")

    assert relink.returncode == 0, relink.stdout + relink.stderr
    assert json.loads(relink.stdout)["totals"]["changed"] == 0
    assert provision.returncode == 0, provision.stdout + provision.stderr
    assert json.loads(provision.stdout)["totals"]["changed"] == 0


def test_later_refresh_disarms_agent(lab, reset_result, request):
    # Runs last in this module: it leaves the agent disarmed.
    invoke = lab[1]

    refresh = invoke("refresh", "--yes")
    status = invoke("status", "--json")

    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert status.returncode == 22
    assert json.loads(status.stdout)["armed"] is False
    assert json.loads(status.stdout)["reason"] == "key_rejected"
