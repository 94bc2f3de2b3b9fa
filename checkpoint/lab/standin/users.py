"""Actions of the user card (``/user/card.php``) and the permissions tab (``/user/perms.php``).

Permission checks mirror Dolibarr 20.0.2. Administrators may do everything. Otherwise
right 253 creates and edits users and their permissions, 256 deletes users, 255 sets
passwords, 2610 sets API keys, 251 reads other users, and 342 edits one's own card.
"""

from __future__ import annotations

import secrets
import string
from typing import TYPE_CHECKING

import bcrypt
import psycopg

from checkpoint.lab.standin import pages, user_pages
from checkpoint.lab.standin.protocol import Response
from checkpoint.lab.standin.store import UPDATE_FORM_COLUMNS, DuplicateLogin, UserInUse

if TYPE_CHECKING:
    from checkpoint.lab.standin.web import PageContext

RANDOM_ALPHABET = string.ascii_letters + string.digits

RIGHT_READ_USERS = 251
RIGHT_WRITE_USERS = 253
RIGHT_SET_PASSWORDS = 255
RIGHT_DELETE_USERS = 256
RIGHT_WRITE_OWN_USER = 342
RIGHT_GENERATE_API_KEYS = 2610

# Links to other users: a missing field or 0 writes NULL, as User::update does.
UPDATE_FORM_USER_LINKS = ("fk_user", "fk_user_expense_validator", "fk_user_holiday_validator")

# Amounts of the update form: a missing or empty field writes NULL.
UPDATE_FORM_NUMBERS = {
    "thm": "thm",
    "tjm": "tjm",
    "salary": "salary",
    "salaryextra": "salaryextra",
    "weeklyhours": "weeklyhours",
}


def random_password(length: int = 32) -> str:
    return "".join(secrets.choice(RANDOM_ALPHABET) for _ in range(length))


def hash_password(password: str) -> str:
    """Hash like PHP's password_hash(): bcrypt, cost 10, with PHP's ``$2y$`` prefix."""
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=10)).decode("ascii")
    return "$2y$" + hashed[4:]


def handle_user_card(context: PageContext) -> Response:
    action = context.action
    request = context.request

    if action == "create":
        return _show_create_form(context, {}, [])
    if action == "add" and request.method == "POST":
        return _add_user(context)

    target = context.store.user_by_id(request.int_param("id"))
    if target is None:
        return context.page("User", "<div class=\"error\">Record not found</div>", 404)

    if action == "edit":
        return _show_edit_form(context, target, [])
    if action == "update" and request.method == "POST":
        return _update_user(context, target)
    if action == "confirm_delete" and request.param("confirm") == "yes":
        return _delete_user(context, target)
    return _show_card(context, target, [], [], confirm_delete=(action == "delete"))


# -- create -------------------------------------------------------------------


def _can_add(context: PageContext) -> bool:
    return context.is_admin or context.has_right(RIGHT_WRITE_USERS)


def _show_create_form(context: PageContext, values: dict[str, str], errors: list[str]) -> Response:
    if not _can_add(context):
        return context.forbidden()
    form = user_pages.create_form(
        context.session.token, values, generated_password=random_password(12),
        api_enabled=context.api_enabled, editor_is_admin=context.is_admin,
    )
    messages = pages.event_messages(errors=errors, warnings=context.warnings)
    return context.page("New user", messages + form)


def _add_user(context: PageContext) -> Response:
    if not _can_add(context):
        return context.forbidden()
    form = context.request.form
    if "cancel" in form:
        return Response.redirect("/user/list.php")

    errors = _missing_name_or_login(form)
    if errors:
        return _show_create_form(context, form, errors)

    api_key = form.get("api_key", "") if context.api_enabled else ""
    password = form.get("password", "")
    fields = {
        "entity": _int(form.get("entity")) or 1,
        "login": form["login"].strip(),
        "lastname": form["lastname"].strip(),
        "firstname": form.get("firstname", "").strip(),
        "admin": 1 if context.is_admin and form.get("admin") == "1" else 0,
        "pass_crypted": hash_password(password) if password else None,
        "api_key": context.encrypt(api_key) if api_key else None,
        "email": form.get("email", "").replace(" ", ""),
    }
    try:
        user_id = context.store.create_user(fields, context.user["rowid"])
    except DuplicateLogin:
        return _show_create_form(context, form, [f"Login {fields['login']} already exists."])
    except psycopg.DataError:
        return _show_create_form(context, form, ["A value is too long for its field."])
    return Response.redirect(f"/user/card.php?id={user_id}")


def _missing_name_or_login(form: dict[str, str]) -> list[str]:
    errors = []
    if not form.get("lastname", "").strip():
        errors.append("Name is not defined.")
    if not form.get("login", "").strip():
        errors.append("Login is not defined.")
    return errors


# -- view, edit, delete ---------------------------------------------------------


def _can_read(context: PageContext, target: dict) -> bool:
    return context.is_admin or context.has_right(RIGHT_READ_USERS) or target["rowid"] == context.user["rowid"]


def _can_edit(context: PageContext, target: dict) -> bool:
    if context.is_admin or context.has_right(RIGHT_WRITE_USERS):
        return True
    return target["rowid"] == context.user["rowid"] and context.has_right(RIGHT_WRITE_OWN_USER)


def _can_delete(context: PageContext, target: dict) -> bool:
    allowed = context.is_admin or context.has_right(RIGHT_DELETE_USERS)
    return allowed and target["rowid"] != context.user["rowid"] and not (target["admin"] and not context.is_admin)


def _show_card(context: PageContext, target: dict, errors: list[str], messages: list[str], *,
               confirm_delete: bool = False) -> Response:
    if not _can_read(context, target):
        return context.forbidden()
    card = user_pages.user_card(
        target, context.session.token, can_edit=_can_edit(context, target),
        can_delete=_can_delete(context, target), confirm_delete=confirm_delete and _can_delete(context, target),
    )
    notices = pages.event_messages(errors=errors, warnings=context.warnings, messages=messages)
    return context.page(f"{target['login']} - Card", notices + card)


def _show_edit_form(context: PageContext, target: dict, errors: list[str]) -> Response:
    if not _can_edit(context, target):
        return context.forbidden()
    api_key = context.decrypt(target["api_key"]) if target["api_key"] else ""
    form = user_pages.edit_form(
        target, context.session.token, api_key=api_key, api_enabled=context.api_enabled,
        editor_is_admin=context.is_admin, editing_self=target["rowid"] == context.user["rowid"],
    )
    return context.page(f"{target['login']} - Card", pages.event_messages(errors=errors) + form)


def _update_user(context: PageContext, target: dict) -> Response:
    """Apply the whole update form, as card.php does: a field missing from the POST is cleared."""
    if not _can_edit(context, target):
        return context.forbidden()
    form = context.request.form
    if "cancel" in form:
        return _show_card(context, target, [], [])

    errors = _missing_name_or_login(form)
    if errors:
        return _show_edit_form(context, target, errors)

    changes = _changes_from_form(context, target, form)
    try:
        context.store.update_user(target["rowid"], changes, context.user["rowid"])
    except DuplicateLogin:
        return _show_edit_form(context, target, [f"Update canceled: value {changes.get('login')} is already used."])
    except psycopg.DataError:
        return _show_edit_form(context, target, ["A value is too long for its field."])
    updated = context.store.user_by_id(target["rowid"]) or target
    return _show_card(context, updated, [], ["User modified"])


def _changes_from_form(context: PageContext, target: dict, form: dict[str, str]) -> dict:
    changes = {column: form.get(field, "") for column, field in UPDATE_FORM_COLUMNS.items()}
    changes["email"] = changes["email"].replace(" ", "")
    for column, field in UPDATE_FORM_NUMBERS.items():
        changes[column] = _number_or_none(form.get(field, ""))
    for column in UPDATE_FORM_USER_LINKS:
        changes[column] = _int(form.get(column)) or None
    changes["employee"] = _int(form.get("employee"))
    changes["fk_country"] = _int(form.get("country_id"))
    changes["fk_state"] = _int(form.get("state_id"))

    editing_self = target["rowid"] == context.user["rowid"]
    can_set_password = context.is_admin or context.has_right(RIGHT_SET_PASSWORDS)
    password = form.get("password", "")
    if can_set_password and password and not password_matches(password, target["pass_crypted"]):
        changes["pass_crypted"] = hash_password(password)

    # An empty api_key keeps the stored one.
    can_set_key = can_set_password or context.has_right(RIGHT_GENERATE_API_KEYS)
    if can_set_key and form.get("api_key"):
        changes["api_key"] = context.encrypt(form["api_key"])

    if context.is_admin and not editing_self:
        changes["admin"] = 1 if form.get("admin") == "1" else 0
    if context.is_admin and not target["ldap_sid"]:
        changes["login"] = form["login"].strip()
    return changes


def password_matches(password: str, hashed: str | None) -> bool:
    """Check a password against a stored bcrypt hash; PHP's ``$2y$`` prefix is accepted."""
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


def _delete_user(context: PageContext, target: dict) -> Response:
    if not _can_delete(context, target):
        return _show_card(context, target, [], [])
    try:
        context.store.delete_user(target["rowid"])
    except UserInUse:
        return _show_card(context, target, ["This user can't be deleted. Maybe it is linked to other records."], [])
    return Response.redirect("/user/list.php?restore_lastsearch_values=1")


# -- permissions ---------------------------------------------------------------


def handle_perms(context: PageContext) -> Response:
    request = context.request
    target = context.store.user_by_id(request.int_param("id"))
    if target is None:
        return context.page("Permissions", "<div class=\"error\">Record not found</div>", 404)
    if not _can_read(context, target):
        return context.forbidden()

    can_edit = context.is_admin or context.has_right(RIGHT_WRITE_USERS)
    action = context.action
    if can_edit and action in ("addrights", "delrights") and request.param("confirm") == "yes":
        _change_rights(context, target["rowid"], action)

    content = user_pages.perms_content(
        target, context.session.token, context.store.rights_definitions(),
        context.store.user_right_ids(target["rowid"]), can_edit=can_edit,
    )
    return context.page(f"{target['login']} - Permissions", pages.event_messages(warnings=context.warnings) + content)


def _change_rights(context: PageContext, user_id: int, action: str) -> None:
    request = context.request
    right_id = request.int_param("rights") or None
    module = request.param("module") or None
    if right_id is None and module is None:
        return
    if action == "addrights":
        context.store.add_rights(user_id, right_id=right_id, module=module)
    else:
        context.store.delete_rights(user_id, right_id=right_id, module=module)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _number_or_none(value: str) -> float | None:
    try:
        return float(value.replace(",", ".")) if value.strip() else None
    except ValueError:
        return None
