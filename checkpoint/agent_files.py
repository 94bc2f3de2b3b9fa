"""The agent's key file and its ``.env``: read, write and tighten them as primitives.

The key file contains only the agent's API key, mode 600. The ``.env`` is the agent's
own dotenv file. It may contain other keys with any quoting, comments and line endings.
Those bytes come back exactly as they were, and only the tool's two variables change.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

from dotenv.parser import parse_stream

from checkpoint.exceptions import ConfigError
from checkpoint.files import PRIVATE_MODE, write_private
from checkpoint.outcome import Outcome

# Dolibarr accepts API keys of 12 to 128 characters. The tool writes keys unquoted, so
# it accepts only characters that need no quoting in a dotenv file or an HTTP header.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:+/=@-]{12,128}$")
EXPORT_PREFIX = re.compile(r"^\s*(?:export\s+)?")
UNQUOTED_VALUE = re.compile(r"^[A-Za-z0-9_.:+/=@,%-]*$")
PENDING_SUFFIX = ".pending"


def read_key_file(path: Path) -> str:
    """Return the key stored in ``path``, without a trailing newline or CRLF.

    Raises ConfigError naming the file, never the key, when it is missing, empty or
    not a single valid key.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"agent key file {path} not found: run invoke provision to create the agent and its key") from None
    except IsADirectoryError:
        raise ConfigError(f"agent key file {path} is a folder: remove it, or set checkpoint.agent.key_file") from None
    except OSError as error:
        raise ConfigError(f"agent key file {path} is unreadable ({error.strerror}): check its owner and mode") from None

    text = raw.decode("utf-8", errors="replace")
    key = text
    if key.endswith("\r\n"):
        key = key[:-2]
    elif key.endswith("\n"):
        key = key[:-1]
    if not key.strip():
        raise ConfigError(f"agent key file {path} is empty: run invoke provision --rotate to write a new key")
    if not KEY_PATTERN.match(key):
        raise ConfigError(
            f"agent key file {path} does not hold one API key of 12 to 128 characters without spaces: "
            "run invoke provision --rotate to write a new key"
        )
    return key


def write_key_file(path: Path, key: str) -> Outcome:
    """Store ``key`` in ``path`` (mode 600, atomic); ok when it already contains that key."""
    if not KEY_PATTERN.match(key):
        raise ConfigError("refusing to store an API key that is not 12 to 128 characters without spaces")

    try:
        current = read_key_file(path)
    except ConfigError:
        current = None

    if current == key and _mode(path) == PRIVATE_MODE:
        return Outcome.ok("write_key_file", f"{path} holds the current key")
    try:
        write_private(path, (key + "\n").encode())
    except OSError as error:
        raise ConfigError(_unwritable_message(path, error)) from None
    return Outcome.changed("write_key_file", f"wrote the agent's key to {path}")


def pending_key_path(key_file: Path) -> Path:
    """Return where a new key waits, beside ``key_file``, until the sandbox accepted it."""
    return key_file.with_name(key_file.name + PENDING_SUFFIX)


def promote_pending_key(pending: Path, key_file: Path) -> None:
    """Rename the verified pending key onto the key file, atomically."""
    try:
        os.replace(pending, key_file)
    except OSError as error:
        raise ConfigError(
            f"cannot move the verified key from {pending} to {key_file} ({error.strerror}): "
            f"fix {key_file} and run invoke provision again, which stores the key kept in {pending}"
        ) from None


def _unwritable_message(path: Path, error: OSError) -> str:
    return (
        f"cannot write agent key file {path} ({error.strerror}): make its folder writable, "
        "or set checkpoint.agent.key_file to a writable place"
    )


def ensure_key_file_mode(path: Path) -> Outcome:
    """Tighten the key file to mode 600 when it is looser."""
    try:
        mode = _mode(path)
    except FileNotFoundError:
        return Outcome.failed(
            "ensure_key_file_mode",
            f"agent key file {path} not found: run invoke provision to create the agent and its key",
        )
    if mode == PRIVATE_MODE:
        return Outcome.ok("ensure_key_file_mode", f"{path} is mode 600")
    os.chmod(path, PRIVATE_MODE)
    return Outcome.changed("ensure_key_file_mode", f"tightened {path} from mode {mode:o} to 600")


def read_env_value(path: Path, name: str) -> str | None:
    """Return the value of ``name`` in the dotenv file, or None when it is not set.

    When the name is set more than once, the last value wins, as with python-dotenv
    and a shell that sources the file.
    """
    value = None
    for binding in _bindings(_without_bom(path.read_text(encoding="utf-8"))[1]):
        if binding.key == name:
            value = binding.value
    return value


def ensure_env_file(path: Path, values: dict[str, str]) -> Outcome:
    """Set ``values`` in the dotenv file at ``path`` and keep every other byte.

    The file is replaced atomically and is mode 600 from its creation; a file that
    was looser is tightened, which reports changed.
    """
    # A symlinked .env stays a link: the file it points at is the one rewritten.
    path = path.resolve() if path.is_symlink() else path
    exists = path.exists()
    try:
        original = path.read_bytes().decode("utf-8") if exists else ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"agent .env {path} is unreadable ({error}): fix or remove it, then rerun") from None
    updated = render_env(original, values)
    loose = exists and _mode(path) != PRIVATE_MODE

    if exists and updated == original and not loose:
        return Outcome.ok("ensure_env_file", f"{path} is up to date")

    write_private(path, updated.encode("utf-8"))
    if not exists:
        return Outcome.changed("ensure_env_file", f"created {path}")
    if updated == original:
        return Outcome.changed("ensure_env_file", f"tightened {path} to mode 600")
    old_values = {binding.key: binding.value for binding in _bindings(_without_bom(original)[1])}
    names = ", ".join(sorted(name for name, value in values.items() if old_values.get(name) != value))
    return Outcome.changed("ensure_env_file", f"updated {names or 'duplicate entries'} in {path}")


def render_env(original: str, values: dict[str, str]) -> str:
    """Return ``original`` with each name in ``values`` set, appending the missing ones.

    Every binding is rebuilt from its original text, so other keys, comments, blank
    lines, quoting and CRLF line endings are kept byte for byte.
    """
    bom, original = _without_bom(original)
    newline = "\r\n" if "\r\n" in original else "\n"
    pieces: list[str] = []

    # Every occurrence of a name is set, so no stale duplicate can win in a reader
    # that takes the last value.
    for binding in _bindings(original):
        text = binding.original.string
        if binding.key in values:
            ending = text[len(text.rstrip("\r\n")):]
            prefix = EXPORT_PREFIX.match(text).group(0)
            text = f"{prefix}{binding.key}={_quote(values[binding.key])}{ending}"
        pieces.append(text)

    present = {binding.key for binding in _bindings(original)}
    remaining = {name: value for name, value in values.items() if name not in present}
    result = bom + "".join(pieces)
    if remaining and result and not result.endswith("\n"):
        result += newline
    for name, value in remaining.items():
        result += f"{name}={_quote(value)}{newline}"
    return result


def _without_bom(text: str) -> tuple[str, str]:
    """Split a leading UTF-8 byte order mark off ``text``, so the parser reads the first key."""
    if text.startswith("\ufeff"):
        return "\ufeff", text[1:]
    return "", text


def _quote(value: str) -> str:
    if UNQUOTED_VALUE.match(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    raise ConfigError("refusing to write a value with a single quote or a line break to the agent's .env")


def _bindings(text: str):
    return parse_stream(io.StringIO(text, newline=""))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
