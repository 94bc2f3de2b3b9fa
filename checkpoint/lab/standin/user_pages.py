"""HTML of the user card (create, view, edit, delete confirmation) and the permissions tab."""

from __future__ import annotations

from html import escape
from itertools import groupby
from urllib.parse import urlencode

from checkpoint.lab.standin.pages import attribute


def _text_row(label: str, name: str, value, *, required: bool = False, extra: str = "") -> str:
    label_html = f"<span class=\"fieldrequired\">{label}</span>" if required else label
    return (
        f"<tr><td class=\"titlefieldcreate\">{label_html}</td><td>"
        f"<input type=\"text\" class=\"minwidth100\" id=\"{name}\" name=\"{name}\" value=\"{attribute(value)}\"{extra}>"
        "</td></tr>\n"
    )


def _yes_no_select(name: str, selected: int) -> str:
    options = "".join(
        f"<option value=\"{value}\"{' selected' if value == selected else ''}>{label}</option>"
        for value, label in ((1, "Yes"), (0, "No"))
    )
    return f"<select class=\"flat width75\" id=\"{name}\" name=\"{name}\">{options}</select>"


def _api_key_row(value: str) -> str:
    return (
        "<tr><td>API key</td><td>"
        "<input class=\"minwidth300 maxwidth400 widthcentpercentminusx\" minlength=\"12\" maxlength=\"128\""
        f" type=\"text\" id=\"api_key\" name=\"api_key\" value=\"{attribute(value)}\" autocomplete=\"off\">"
        " <span class=\"fa fa-generate\" id=\"generate_api_key\" title=\"Generate\"></span></td></tr>\n"
    )


def create_form(token: str, values: dict[str, str], *, generated_password: str, api_enabled: bool,
                editor_is_admin: bool) -> str:
    rows = [
        _text_row("Title", "civility_code", values.get("civility_code", "")),
        _text_row("Last name", "lastname", values.get("lastname", ""), required=True),
        _text_row("First name", "firstname", values.get("firstname", "")),
        _text_row("Login", "login", values.get("login", ""), required=True, extra=" maxsize=\"24\""),
    ]
    if editor_is_admin:
        admin = 1 if values.get("admin") == "1" else 0
        rows.append(f"<tr><td>Administrator</td><td>{_yes_no_select('admin', admin)}</td></tr>\n")
    password = values.get("password", generated_password)
    rows.append(
        "<tr><td class=\"fieldrequired\">Password</td><td>"
        f"<input class=\"minwidth300\" maxsize=\"32\" type=\"text\" id=\"password\" name=\"password\""
        f" value=\"{attribute(password)}\" autocomplete=\"new-password\"></td></tr>\n"
    )
    if api_enabled:
        rows.append(_api_key_row(values.get("api_key", "")))
    rows.append(_text_row("Email", "email", values.get("email", "")))

    return (
        "<div class=\"titre inline-block\">New user</div>\n"
        "<form action=\"/user/card.php\" method=\"POST\" name=\"createuser\">\n"
        f"<input type=\"hidden\" name=\"token\" value=\"{attribute(token)}\">\n"
        "<input type=\"hidden\" name=\"action\" value=\"add\">\n"
        "<input type=\"hidden\" name=\"entity\" value=\"1\">\n"
        "<table class=\"border centpercent\">\n" + "".join(rows) + "</table>\n"
        "<div class=\"center\"><input type=\"submit\" class=\"button button-save\" name=\"save\" value=\"Create user\">"
        " <input type=\"submit\" class=\"button button-cancel\" name=\"cancel\" value=\"Cancel\"></div>\n"
        "</form>"
    )


def user_card(user: dict, token: str, *, can_edit: bool, can_delete: bool, confirm_delete: bool) -> str:
    user_id = user["rowid"]
    name = " ".join(part for part in (user["firstname"], user["lastname"]) if part)
    status = "Enabled" if user["statut"] == 1 else "Disabled"
    rows = "".join(
        f"<tr><td class=\"titlefield\">{label}</td><td>{escape(str(value))}</td></tr>\n"
        for label, value in (("Login", user["login"]), ("Last name", user["lastname"] or ""),
                             ("First name", user["firstname"] or ""), ("Administrator", "Yes" if user["admin"] else "No"),
                             ("Email", user["email"] or ""), ("Status", status))
    )
    buttons = []
    if can_edit:
        edit = "/user/card.php?" + urlencode({"id": user_id, "action": "edit", "token": token})
        buttons.append(f"<a class=\"butAction\" href=\"{attribute(edit)}\">Modify</a>")
    if can_delete:
        delete = "/user/card.php?" + urlencode({"id": user_id, "action": "delete", "token": token})
        buttons.append(f"<a class=\"butActionDelete\" href=\"{attribute(delete)}\">Delete</a>")

    confirm = ""
    if confirm_delete:
        yes = "/user/card.php?" + urlencode(
            {"id": user_id, "action": "confirm_delete", "confirm": "yes", "token": token})
        confirm = (
            "<div id=\"dialog-confirm\" title=\"Delete user\">Are you sure you want to delete user "
            f"<b>{escape(user['login'])}</b>?<br><a class=\"button\" href=\"{attribute(yes)}\">Yes</a>"
            f" <a class=\"button\" href=\"/user/card.php?id={user_id}\">No</a></div>\n"
        )

    return (
        "<div class=\"tabs\"><a class=\"tabactive tab\" id=\"user\" href=\"/user/card.php?id="
        f"{user_id}\">User</a> <a class=\"tab\" id=\"rights\" href=\"/user/perms.php?id={user_id}\">Permissions</a></div>\n"
        f"{confirm}<div class=\"refidno\">{escape(name)}</div>\n"
        f"<table class=\"border tableforfield centpercent\">\n{rows}</table>\n"
        f"<div class=\"tabsAction\">{' '.join(buttons)}</div>"
    )


def edit_form(user: dict, token: str, *, api_key: str, api_enabled: bool, editor_is_admin: bool,
              editing_self: bool) -> str:
    user_id = user["rowid"]
    rows = [
        _text_row("Title", "civility_code", user["civility"] or ""),
        _text_row("Last name", "lastname", user["lastname"] or "", required=True),
        _text_row("First name", "firstname", user["firstname"] or ""),
        _text_row("Login", "login", user["login"], required=True, extra=" maxsize=\"24\""),
        _text_row("Gender", "gender", user["gender"] or ""),
    ]
    if editor_is_admin and not editing_self:
        rows.append(f"<tr><td>Administrator</td><td>{_yes_no_select('admin', 1 if user['admin'] else 0)}</td></tr>\n")
    rows.append(_text_row("Employee", "employee", user["employee"] if user["employee"] is not None else 1))
    rows.append(
        "<tr><td>Password</td><td><input class=\"minwidth300\" maxsize=\"32\" type=\"password\" id=\"password\""
        " name=\"password\" value=\"\" autocomplete=\"new-password\"></td></tr>\n"
    )
    if api_enabled:
        rows.append(_api_key_row(api_key))
    for label, name, value in (
        ("Address", "address", user["address"]), ("Zip", "zipcode", user["zip"]), ("Town", "town", user["town"]),
        ("Phone", "office_phone", user["office_phone"]), ("Fax", "office_fax", user["office_fax"]),
        ("Mobile", "user_mobile", user["user_mobile"]), ("Email", "email", user["email"]),
        ("Job position", "job", user["job"]), ("Signature", "signature", user["signature"]),
        ("Accounting code", "accountancy_code", user["accountancy_code"]), ("OpenID", "openid", user["openid"]),
        ("Color", "color", user["color"]), ("Language", "default_lang", user["lang"]),
    ):
        rows.append(_text_row(label, name, value or ""))

    return (
        f"<form action=\"/user/card.php?id={user_id}\" method=\"POST\" name=\"updateuser\""
        " enctype=\"application/x-www-form-urlencoded\">\n"
        f"<input type=\"hidden\" name=\"token\" value=\"{attribute(token)}\">\n"
        "<input type=\"hidden\" name=\"action\" value=\"update\">\n"
        f"<input type=\"hidden\" name=\"entity\" value=\"{attribute(user['entity'])}\">\n"
        "<table class=\"border centpercent\">\n" + "".join(rows) + "</table>\n"
        "<div class=\"center\"><input type=\"submit\" class=\"button button-save\" name=\"save\" value=\"Save\">"
        " <input type=\"submit\" class=\"button button-cancel\" name=\"cancel\" value=\"Cancel\"></div>\n"
        "</form>"
    )


def perms_content(user: dict, token: str, definitions: list[dict], granted: set[int], *, can_edit: bool) -> str:
    user_id = user["rowid"]
    rows = []
    for module, rights in groupby(definitions, key=lambda right: right["module"]):
        rows.append(_module_row(user_id, token, module, can_edit))
        for right in rights:
            rows.append(_right_row(user_id, token, right, right["id"] in granted, can_edit))

    admin_note = ""
    if user["admin"]:
        admin_note = "<div class=\"opacitymedium\">This user is an administrator: it has every permission.</div>\n"
    return (
        "<div class=\"tabs\"><a class=\"tab\" id=\"user\" href=\"/user/card.php?id="
        f"{user_id}\">User</a> <a class=\"tabactive tab\" id=\"rights\" href=\"/user/perms.php?id={user_id}\">"
        f"Permissions</a></div>\n{admin_note}"
        "<table class=\"noborder centpercent\" id=\"permissions\">\n"
        "<tr class=\"liste_titre\"><th>Module</th><th class=\"center\"></th><th>Permission</th></tr>\n"
        + "\n".join(rows) + "\n</table>"
    )


def _perms_link(user_id: int, token: str, action: str, **target) -> str:
    parameters = {"id": user_id, "action": action, "entity": 1, **target, "confirm": "yes", "token": token}
    module = target.get("updatedmodulename") or target.get("module")
    if module:
        parameters["updatedmodulename"] = module
    return "/user/perms.php?" + urlencode(parameters)


def _module_row(user_id: int, token: str, module: str, can_edit: bool) -> str:
    links = ""
    if can_edit:
        add = _perms_link(user_id, token, "addrights", module=module)
        remove = _perms_link(user_id, token, "delrights", module=module)
        links = (f"<a class=\"reposition addexpandedmodulesinparamlist\" href=\"{attribute(add)}\">All</a> / "
                 f"<a class=\"reposition addexpandedmodulesinparamlist\" href=\"{attribute(remove)}\">None</a>")
    return (f"<tr class=\"oddeven trforbreak\" data-module=\"{attribute(module)}\"><td class=\"maxwidthonsmartphone\">"
            f"<b>{escape(module)}</b></td><td class=\"center nowrap\">{links}</td><td></td></tr>")


def _right_row(user_id: int, token: str, right: dict, granted: bool, can_edit: bool) -> str:
    state = "switch_on" if granted else "switch_off"
    toggle = f"<span class=\"{state}\" title=\"{'Granted' if granted else 'Not granted'}\"></span>"
    if can_edit:
        action = "delrights" if granted else "addrights"
        link = _perms_link(user_id, token, action, rights=right["id"], updatedmodulename=right["module"])
        toggle = f"<a class=\"reposition\" href=\"{attribute(link)}\">{toggle}</a>"
    return (f"<tr class=\"oddeven\" data-right-id=\"{right['id']}\"><td></td><td class=\"center\">{toggle}</td>"
            f"<td>{escape(right['libelle'] or '')} <span class=\"opacitymedium\">({right['id']})</span></td></tr>")
