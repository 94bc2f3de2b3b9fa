"""Cheap checks that ``invoke provision`` can run, made before anything changes.

``reset`` runs them before the refresh, so a sandbox is never replaced when the
provisioning that must follow cannot log in or cannot store the agent's key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dotenv import dotenv_values

from checkpoint.exceptions import ConfigError
from checkpoint.files import PRIVATE_MODE
from checkpoint.settings import Settings

PASSWORD_VAR = "DOLIBARR_ADMIN_PASSWORD"


def check_provision_prerequisites(settings: Settings, headed: bool | None = None) -> list[str]:
    """Raise a one-line ConfigError when provision cannot run; return warnings otherwise.

    Checks that Chromium exists, that the admin can log in (a password in the secrets
    file, or a display for a headed browser), and that the key file's folder is
    writable. ``headed`` has the meaning it has for ``provision_agent``.
    """
    _require_chromium(settings.chromium)
    warnings = check_admin_login_possible(settings.secrets_file, headed)
    _require_writable_key_folder(settings.agent.key_file)
    return warnings


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _require_chromium(chromium: Path) -> None:
    if chromium.is_file() and os.access(chromium, os.X_OK):
        return
    raise ConfigError(
        f"Chromium not found at {chromium}: install the Debian package chromium, "
        "or set checkpoint.provision.chromium"
    )


def check_admin_login_possible(secrets_file: Path, headed: bool | None) -> list[str]:
    """Return a warning for a secrets file looser than mode 600; raise when no login is possible."""
    if headed and not display_available():
        raise ConfigError(
            "--headed needs a display for the browser, but DISPLAY and WAYLAND_DISPLAY are unset: "
            "run where a display is"
        )
    if headed:
        return []
    if not secrets_file.exists():
        if headed is None and display_available():
            return []
        raise ConfigError(
            f"secrets file {secrets_file} not found: create it (mode 600) with {PASSWORD_VAR}=<the admin's password>, "
            "or set checkpoint.sandbox.secrets_file"
        )
    if not secrets_file.is_file():
        raise ConfigError(f"secrets file {secrets_file} is not a file: replace it with a dotenv file holding {PASSWORD_VAR}")

    try:
        password = dotenv_values(secrets_file).get(PASSWORD_VAR) or ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"secrets file {secrets_file} is unreadable ({error}): check its owner and mode") from None
    if not password:
        _require_no_password_login(secrets_file, headed)

    mode = stat.S_IMODE(secrets_file.stat().st_mode)
    if mode & ~PRIVATE_MODE:
        return [f"warning: secrets file {secrets_file} is mode {mode:o}, looser than 600: run chmod 600 {secrets_file}"]
    return []


def _require_no_password_login(secrets_file: Path, headed: bool | None) -> None:
    if headed is False:
        raise ConfigError(
            f"no {PASSWORD_VAR} in {secrets_file}: put the admin's password there, "
            "or run without --headless to log in by hand"
        )
    _require_display(f"no {PASSWORD_VAR} in {secrets_file}")


def _require_display(problem: str) -> None:
    if display_available():
        return
    raise ConfigError(
        f"{problem} and no display for a headed browser (DISPLAY and WAYLAND_DISPLAY are unset): "
        f"put {PASSWORD_VAR} in the secrets file, or run where a display is"
    )


def _require_writable_key_folder(key_file: Path) -> None:
    """Raise unless ``key_file`` is not a folder and its folder exists writable or can be created."""
    if key_file.is_dir():
        raise ConfigError(f"agent key file {key_file} is a folder: remove it, or set checkpoint.agent.key_file")

    folder = key_file.parent
    while not folder.exists():
        folder = folder.parent
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return
    raise ConfigError(
        f"cannot write agent key file {key_file}: {folder} is not a writable folder; "
        "make it writable, or set checkpoint.agent.key_file to a writable place"
    )
