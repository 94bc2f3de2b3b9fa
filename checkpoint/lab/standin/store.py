"""Access to the sandbox database's Dolibarr tables, one short connection per call.

The lab's refresh replaces the whole schema in one transaction, so the stand-in never
keeps a connection or a transaction open between requests: each function connects,
runs a few statements under ``statement_timeout`` and ``lock_timeout``, and closes.
A database that is not reachable, or a schema without ``llx_user``, raises
``StoreUnavailable``, which the server turns into a 503.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

# Dolibarr without multicompany works in entity 1; superadmins and global consts are in entity 0.
ENTITY = 1
VISIBLE_ENTITIES = (0, ENTITY)

STATEMENT_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 2000
CONNECT_TIMEOUT_SECONDS = 5

# Columns that must never leave the store towards a page or an API response.
SECRET_COLUMNS = ("pass", "pass_crypted", "pass_temp", "api_key", "pass_encoding")

# Columns that the update form of the user card writes, with the POST field carrying each.
UPDATE_FORM_COLUMNS = {
    "civility": "civility_code",
    "lastname": "lastname",
    "firstname": "firstname",
    "gender": "gender",
    "address": "address",
    "zip": "zipcode",
    "town": "town",
    "office_phone": "office_phone",
    "office_fax": "office_fax",
    "user_mobile": "user_mobile",
    "email": "email",
    "job": "job",
    "signature": "signature",
    "accountancy_code": "accountancy_code",
    "openid": "openid",
    "color": "color",
    "lang": "default_lang",
}


# Rows deleted together with a user: its rights, groups, parameters, tags and extra fields.
USER_OWNED_ROWS = (
    ("llx_user_rights", "fk_user"),
    ("llx_usergroup_user", "fk_user"),
    ("llx_user_param", "fk_user"),
    ("llx_categorie_user", "fk_user"),
    ("llx_user_employment", "fk_user"),
    ("llx_user_extrafields", "fk_object"),
)


class StoreUnavailable(Exception):
    """The sandbox database cannot serve Dolibarr now (down, being replaced, or not seeded)."""


class UserInUse(Exception):
    """Other records still reference the user, so it cannot be deleted."""


class DuplicateLogin(Exception):
    """A user with that login already exists in the entity."""


@dataclass(frozen=True)
class Store:
    db_uri: str
    pgpassfile: Path | None = None

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """Yield a connection whose transaction commits on success and rolls back on error."""
        options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
        parameters = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": options, "row_factory": dict_row}
        if self.pgpassfile is not None:
            parameters["passfile"] = str(self.pgpassfile)

        try:
            with psycopg.connect(self.db_uri, **parameters) as connection:
                yield connection
        except errors.UndefinedTable as error:
            raise StoreUnavailable("the sandbox database has no Dolibarr tables") from error
        except (errors.QueryCanceled, errors.LockNotAvailable) as error:
            raise StoreUnavailable("the sandbox database is busy (timeout)") from error
        except psycopg.OperationalError as error:
            raise StoreUnavailable("the sandbox database is not reachable") from error

    # -- consts ------------------------------------------------------------

    def consts(self) -> dict[str, str]:
        """Return the consts of entity 0 overridden by those of entity 1, as Dolibarr loads them."""
        with self.connect() as connection:
            rows = connection.execute(
                "SELECT name, value FROM llx_const WHERE entity = ANY(%s) ORDER BY entity",
                (list(VISIBLE_ENTITIES),),
            ).fetchall()
        return {row["name"]: row["value"] for row in rows}

    # -- users -------------------------------------------------------------

    def user_by_login(self, login: str) -> dict | None:
        with self.connect() as connection:
            return connection.execute(
                "SELECT * FROM llx_user WHERE login = %s AND entity = ANY(%s) ORDER BY entity LIMIT 1",
                (login, list(VISIBLE_ENTITIES)),
            ).fetchone()

    def user_by_id(self, user_id: int) -> dict | None:
        with self.connect() as connection:
            return connection.execute(
                "SELECT * FROM llx_user WHERE rowid = %s AND entity = ANY(%s)",
                (user_id, list(VISIBLE_ENTITIES)),
            ).fetchone()

    def users_by_api_key(self, raw_key: str, encrypted_key: str) -> list[dict]:
        """Return the valid users whose stored key equals the raw key or its encryption.

        Valid means enabled and inside the validity dates, as Dolibarr's API login checks.
        """
        with self.connect() as connection:
            return connection.execute(
                "SELECT * FROM llx_user"
                " WHERE (api_key = %s OR api_key = %s) AND entity = ANY(%s) AND statut = 1"
                " AND (datestartvalidity IS NULL OR datestartvalidity <= now())"
                " AND (dateendvalidity IS NULL OR dateendvalidity >= now())",
                (raw_key, encrypted_key, list(VISIBLE_ENTITIES)),
            ).fetchall()

    def search_users(self, login_fragment: str) -> list[dict]:
        pattern = "%" + login_fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.connect() as connection:
            return connection.execute(
                "SELECT rowid, login, lastname, firstname, admin, statut, entity FROM llx_user"
                " WHERE login ILIKE %s AND entity = ANY(%s) ORDER BY login",
                (pattern, list(VISIBLE_ENTITIES)),
            ).fetchall()

    def record_login(self, user_id: int, address: str) -> None:
        with self.connect() as connection:
            connection.execute(
                "UPDATE llx_user SET datepreviouslogin = datelastlogin, ippreviouslogin = iplastlogin,"
                " datelastlogin = now(), iplastlogin = %s WHERE rowid = %s",
                (address, user_id),
            )

    def create_user(self, fields: dict, creator_id: int) -> int:
        """Insert a user and return its rowid; raise DuplicateLogin when the login is taken."""
        columns = ["entity", "login", "lastname", "firstname", "admin", "pass_crypted", "api_key",
                   "email", "statut", "fk_user_creat"]
        values = [fields["entity"], fields["login"], fields["lastname"], fields["firstname"], fields["admin"],
                  fields["pass_crypted"], fields["api_key"], fields["email"], 1, creator_id]
        placeholders = ", ".join(["%s"] * len(columns))
        try:
            with self.connect() as connection:
                if self._login_taken(connection, fields["login"], None):
                    raise DuplicateLogin(fields["login"])
                row = connection.execute(
                    f"INSERT INTO llx_user ({', '.join(columns)}, datec, tms)"
                    f" VALUES ({placeholders}, now(), now()) RETURNING rowid",
                    values,
                ).fetchone()
        except errors.UniqueViolation as error:
            raise DuplicateLogin(fields["login"]) from error
        return row["rowid"]

    def update_user(self, user_id: int, changes: dict, modifier_id: int) -> None:
        """Write ``changes`` (column to value) to one user; raise DuplicateLogin for a taken login."""
        assignments = ", ".join(f"{column} = %s" for column in changes)
        try:
            with self.connect() as connection:
                if "login" in changes and self._login_taken(connection, changes["login"], user_id):
                    raise DuplicateLogin(changes["login"])
                connection.execute(
                    f"UPDATE llx_user SET {assignments}, fk_user_modif = %s, tms = now() WHERE rowid = %s",
                    [*changes.values(), modifier_id, user_id],
                )
        except errors.UniqueViolation as error:
            raise DuplicateLogin(str(changes.get("login"))) from error

    def delete_user(self, user_id: int) -> None:
        """Delete a user with the rows that only describe it, as Dolibarr does.

        Raise UserInUse when other records (invoices, contacts, ...) still reference it.
        """
        try:
            with self.connect() as connection:
                for table, column in USER_OWNED_ROWS:
                    connection.execute(f"DELETE FROM {table} WHERE {column} = %s", (user_id,))
                connection.execute("DELETE FROM llx_user WHERE rowid = %s", (user_id,))
        except errors.ForeignKeyViolation as error:
            raise UserInUse(user_id) from error

    @staticmethod
    def _login_taken(connection: psycopg.Connection, login: str, except_id: int | None) -> bool:
        row = connection.execute(
            "SELECT 1 FROM llx_user WHERE login = %s AND entity = ANY(%s) AND rowid IS DISTINCT FROM %s",
            (login, list(VISIBLE_ENTITIES), except_id),
        ).fetchone()
        return row is not None

    # -- rights ------------------------------------------------------------

    def rights_definitions(self) -> list[dict]:
        with self.connect() as connection:
            return connection.execute(
                "SELECT id, libelle, module, module_position, perms, subperms, type FROM llx_rights_def"
                " WHERE entity = %s ORDER BY module_position, module, id",
                (ENTITY,),
            ).fetchall()

    def user_right_ids(self, user_id: int) -> set[int]:
        """Return the right ids of a user, given directly or through its groups."""
        with self.connect() as connection:
            rows = connection.execute(
                "SELECT fk_id FROM llx_user_rights WHERE fk_user = %s AND entity = %s"
                " UNION SELECT gr.fk_id FROM llx_usergroup_rights gr"
                " JOIN llx_usergroup_user gu ON gu.fk_usergroup = gr.fk_usergroup"
                " WHERE gu.fk_user = %s AND gr.entity = %s",
                (user_id, ENTITY, user_id, ENTITY),
            ).fetchall()
        return {row["fk_id"] for row in rows}

    def add_rights(self, user_id: int, *, right_id: int | None = None, module: str | None = None) -> None:
        """Grant one right with the read rights it implies, or every right of a module.

        Dolibarr adds the read right of the same module (``perms`` lire/read without
        ``subperms``), or of the same ``perms`` (``subperms`` lire/read), with a single right.
        """
        with self.connect() as connection:
            where, parameters = self._rights_to_add(connection, right_id, module)
            if where is None:
                return
            connection.execute(
                "INSERT INTO llx_user_rights (entity, fk_user, fk_id)"
                f" SELECT %s, %s, id FROM llx_rights_def WHERE entity = %s AND ({where})"
                " ON CONFLICT (entity, fk_user, fk_id) DO NOTHING",
                (ENTITY, user_id, ENTITY, *parameters),
            )

    def delete_rights(self, user_id: int, *, right_id: int | None = None, module: str | None = None) -> None:
        """Revoke one right with the rights that depend on it, or every right of a module.

        Revoking a read right also revokes what it gates: the whole ``perms`` for a
        ``subperms`` read, the whole module for a module read.
        """
        with self.connect() as connection:
            where, parameters = self._rights_to_delete(connection, right_id, module)
            if where is None:
                return
            connection.execute(
                "DELETE FROM llx_user_rights WHERE entity = %s AND fk_user = %s"
                f" AND fk_id IN (SELECT id FROM llx_rights_def WHERE entity = %s AND ({where}))",
                (ENTITY, user_id, ENTITY, *parameters),
            )

    def _rights_to_add(self, connection, right_id, module) -> tuple[str | None, tuple]:
        if right_id is None:
            return ("module = %s", (module,)) if module else (None, ())

        definition = self._right(connection, right_id)
        if definition is None:
            return "id = %s", (right_id,)
        if definition["subperms"]:
            return (
                "id = %s OR (module = %s AND perms = %s AND subperms IN ('lire', 'read'))",
                (right_id, definition["module"], definition["perms"]),
            )
        return (
            "id = %s OR (module = %s AND perms IN ('lire', 'read') AND coalesce(subperms, '') = '')",
            (right_id, definition["module"]),
        )

    def _rights_to_delete(self, connection, right_id, module) -> tuple[str | None, tuple]:
        if right_id is None:
            return ("module = %s", (module,)) if module else (None, ())

        definition = self._right(connection, right_id)
        if definition is None:
            return "id = %s", (right_id,)
        if definition["subperms"] in ("lire", "read"):
            return "id = %s OR (module = %s AND perms = %s)", (right_id, definition["module"], definition["perms"])
        if definition["perms"] in ("lire", "read") and not definition["subperms"]:
            return "id = %s OR module = %s", (right_id, definition["module"])
        return "id = %s", (right_id,)

    @staticmethod
    def _right(connection, right_id: int) -> dict | None:
        return connection.execute(
            "SELECT module, perms, subperms FROM llx_rights_def WHERE id = %s AND entity = %s",
            (right_id, ENTITY),
        ).fetchone()
