"""The agent's key file and .env primitives: changed then ok, and bad inputs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from checkpoint.agent_files import (
    ensure_env_file,
    ensure_key_file_mode,
    read_env_value,
    read_key_file,
    render_env,
    write_key_file,
)
from checkpoint.exceptions import ConfigError
from checkpoint.outcome import Status

KEY = "Agent-Key-0123456789abcdef"
VALUES = {"DOLIBARR_API_KEY": KEY, "DOLIBARR_URL": "http://127.0.0.1:8080"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_key_file_changed_then_ok(tmp_path):
    key_file = tmp_path / "agent" / "api-key"

    first = write_key_file(key_file, KEY)
    second = write_key_file(key_file, KEY)

    assert first.status is Status.CHANGED
    assert second.status is Status.OK
    assert mode(key_file) == 0o600
    assert key_file.read_text() == KEY + "\n"


def test_write_key_file_leaves_no_temporary_files(tmp_path):
    write_key_file(tmp_path / "api-key", KEY)

    assert [path.name for path in tmp_path.iterdir()] == ["api-key"]


def test_key_file_mode_tightened_then_ok(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)

    first = ensure_key_file_mode(key_file)
    second = ensure_key_file_mode(key_file)

    assert first.status is Status.CHANGED
    assert "644" in first.message
    assert second.status is Status.OK
    assert mode(key_file) == 0o600


def test_key_file_mode_missing_fails(tmp_path):
    outcome = ensure_key_file_mode(tmp_path / "absent")

    assert outcome.status is Status.FAILED
    assert "invoke provision" in outcome.message


@pytest.mark.parametrize("content", [KEY + "\n", KEY + "\r\n", KEY])
def test_read_key_file_strips_line_ending(tmp_path, content):
    key_file = tmp_path / "api-key"
    key_file.write_bytes(content.encode())

    assert read_key_file(key_file) == KEY


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "is empty"),
        ("\n", "is empty"),
        ("two words here!", "does not hold one API key"),
        ("short\n", "does not hold one API key"),
        (KEY + "\n" + KEY + "\n", "does not hold one API key"),
    ],
)
def test_read_key_file_rejects_bad_content(tmp_path, content, expected):
    key_file = tmp_path / "api-key"
    key_file.write_text(content)

    with pytest.raises(ConfigError) as error:
        read_key_file(key_file)

    assert expected in str(error.value)
    assert str(key_file) in str(error.value)
    assert KEY not in str(error.value)


def test_read_key_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="not found: run invoke provision"):
        read_key_file(tmp_path / "absent")


def test_env_file_created_mode_600_then_ok(tmp_path):
    env_file = tmp_path / ".env"

    first = ensure_env_file(env_file, VALUES)
    second = ensure_env_file(env_file, VALUES)

    assert first.status is Status.CHANGED
    assert second.status is Status.OK
    assert mode(env_file) == 0o600
    assert read_env_value(env_file, "DOLIBARR_API_KEY") == KEY


TRICKY_ENV = (
    "# the agent's own settings\n"
    "SPACES=\"value with spaces\"\n"
    "HASH='not # a comment'\n"
    "DOLLAR=$HOME/literal\n"
    "export QUOTES=\"she said \\\"hi\\\"\"\n"
    "BACKSLASH='C:\\path\\to'\n"
    "DOLIBARR_API_KEY=old-key-000000000\n"
    "EMPTY=\n"
    "\n"
    "LAST=x # trailing comment"
)


def test_env_file_keeps_other_bytes(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(TRICKY_ENV)

    ensure_env_file(env_file, VALUES)
    written = env_file.read_text()

    expected = TRICKY_ENV.replace("DOLIBARR_API_KEY=old-key-000000000", f"DOLIBARR_API_KEY={KEY}")
    assert written == expected + "\nDOLIBARR_URL=http://127.0.0.1:8080\n"


def test_env_file_keeps_crlf(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"A='x y'\r\nDOLIBARR_API_KEY=old-key-000000000\r\n")

    ensure_env_file(env_file, VALUES)

    assert env_file.read_bytes() == (
        f"A='x y'\r\nDOLIBARR_API_KEY={KEY}\r\nDOLIBARR_URL=http://127.0.0.1:8080\r\n".encode()
    )


def test_env_file_0644_is_tightened(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(render_env("", VALUES))
    env_file.chmod(0o644)

    first = ensure_env_file(env_file, VALUES)
    second = ensure_env_file(env_file, VALUES)

    assert first.status is Status.CHANGED
    assert "mode 600" in first.message
    assert second.status is Status.OK
    assert mode(env_file) == 0o600


def test_render_env_keeps_export_prefix():
    assert render_env("export DOLIBARR_API_KEY=old\n", {"DOLIBARR_API_KEY": KEY}) == f"export DOLIBARR_API_KEY={KEY}\n"


def test_env_file_sets_every_duplicate(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DOLIBARR_API_KEY=first-key-00000\nDOLIBARR_API_KEY=second-key-0000\n")

    ensure_env_file(env_file, VALUES)

    assert env_file.read_text().count(f"DOLIBARR_API_KEY={KEY}\n") == 2
    assert read_env_value(env_file, "DOLIBARR_API_KEY") == KEY


def test_read_env_value_last_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("A=first\nA=last\n")

    assert read_env_value(env_file, "A") == "last"


def test_env_file_symlink_kept(tmp_path):
    target = tmp_path / "real.env"
    target.write_text("OTHER=1\n")
    link = tmp_path / ".env"
    link.symlink_to(target)

    ensure_env_file(link, VALUES)

    assert link.is_symlink()
    assert read_env_value(target, "DOLIBARR_API_KEY") == KEY
    assert mode(target) == 0o600


def test_env_file_keeps_byte_order_mark(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_bytes("\ufeffOTHER=1\n".encode())

    ensure_env_file(env_file, VALUES)

    assert env_file.read_bytes().startswith("\ufeffOTHER=1\n".encode())
    assert read_env_value(env_file, "OTHER") == "1"


def test_env_file_message_names_changed_variable(tmp_path):
    env_file = tmp_path / ".env"
    ensure_env_file(env_file, VALUES)

    outcome = ensure_env_file(env_file, {**VALUES, "DOLIBARR_API_KEY": "Another-Key-0123456789"})

    assert "updated DOLIBARR_API_KEY in" in outcome.message
