"""Users of the generated prod, their rights and preferences.

Passwords are bcrypt hashes with the ``$2y$`` prefix that PHP's ``password_hash`` writes.
Python's bcrypt writes ``$2b$``; both prefixes name the same algorithm, so swapping the
prefix keeps the hash valid for PHP and for Python's ``bcrypt.checkpw``.
"""

from __future__ import annotations

import secrets

import bcrypt
import psycopg

from checkpoint.lab.generator import reference

BCRYPT_COST = 10


def php_bcrypt_hash(password: str) -> str:
    """Return a ``$2y$10$`` bcrypt hash of ``password`` as Dolibarr stores it."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    return "$2y$" + hashed.removeprefix("$2b$")


def insert_users(cursor: psycopg.Cursor, admin_password: str) -> None:
    """Insert ``admin`` (superadmin at entity 0) and the normal users, with their rights."""
    install_time = reference.INSTALL_TIME
    cursor.execute(
        "INSERT INTO llx_user (rowid, entity, admin, employee, login, pass_crypted, lastname, email, statut,"
        " datec, tms, datelastpassvalidation)"
        " VALUES (%s, 0, 1, 1, %s, %s, 'SuperAdmin', 'admin@acme-lab.example', 1, %s, %s, %s)",
        (reference.ADMIN_ID, reference.ADMIN_LOGIN, php_bcrypt_hash(admin_password), install_time,
         install_time, install_time),
    )

    for rowid, login, lastname, firstname, email in reference.NORMAL_USERS:
        # No one logs in as these users in the lab, so their passwords are thrown away.
        unknown_password = secrets.token_urlsafe(18)
        cursor.execute(
            "INSERT INTO llx_user (rowid, entity, admin, employee, login, pass_crypted, lastname, firstname,"
            " email, statut, datec, tms, fk_user_creat, lang)"
            " VALUES (%s, 1, 0, 1, %s, %s, %s, %s, %s, 1, %s, %s, %s, 'fr_FR')",
            (rowid, login, php_bcrypt_hash(unknown_password), lastname, firstname, email, install_time,
             install_time, reference.ADMIN_ID),
        )

    _insert_rights(cursor)
    cursor.executemany(
        "INSERT INTO llx_user_param (fk_user, entity, param, value) VALUES (%s, 1, %s, %s)",
        [
            (reference.ADMIN_ID, "MAIN_LANDING_PAGE", "/compta/facture/list.php"),
            (reference.ADMIN_ID, "MAIN_SIZE_LISTE_LIMIT", "50"),
            (2, "MAIN_LANG_DEFAULT", "fr_FR"),
        ],
    )


def _insert_rights(cursor: psycopg.Cursor) -> None:
    grants = [(reference.ADMIN_ID, right_id) for right_id in reference.ADMIN_RIGHTS]
    user_ids = {login: rowid for rowid, login, *_ in reference.NORMAL_USERS}
    for login, right_ids in reference.NORMAL_USER_RIGHTS.items():
        grants += [(user_ids[login], right_id) for right_id in right_ids]
    cursor.executemany("INSERT INTO llx_user_rights (entity, fk_user, fk_id) VALUES (1, %s, %s)", grants)
