"""The bastion's address, ``[user@]host[:port]``, and the settings of a bastion run."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from checkpoint.exceptions import ConfigError

TARGET_FORMAT = "use [user@]host[:port], such as admin@bastion.example:2222, or [::1]:2222 for IPv6"
HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
DEFAULT_CONNECT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class BastionTarget:
    """A parsed ``[user@]host[:port]``. ``None`` leaves the value to ssh_config, then to the defaults."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


def parse_target(value: str, setting: str = "bastion") -> BastionTarget:
    """Parse ``[user@]host[:port]``; a bracketed or bare IPv6 address is accepted as host.

    Raises ConfigError naming ``setting`` and the value when it does not parse.
    """
    text = value.strip()
    user, at, rest = text.rpartition("@")
    if at and not USER_NAME.match(user):
        raise ConfigError(f"invalid {setting} {value!r}: the user name {user!r} is invalid; {TARGET_FORMAT}")

    host, port_text = _split_host_port(rest, value, setting)
    port = _port(port_text, value, setting) if port_text is not None else None
    return BastionTarget(host=host, user=user or None, port=port)


def _split_host_port(text: str, value: str, setting: str) -> tuple[str, str | None]:
    if text.startswith("["):
        address, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ConfigError(f"invalid {setting} {value!r}: unbalanced brackets; {TARGET_FORMAT}")
        _require_ipv6(address, value, setting)
        return address, after[1:] if after else None

    if text.count(":") > 1:
        _require_ipv6(text, value, setting)
        return text, None

    host, colon, port_text = text.partition(":")
    if not HOST_NAME.match(host):
        raise ConfigError(f"invalid {setting} {value!r}: the host name {host!r} is invalid; {TARGET_FORMAT}")
    return host, port_text if colon else None


def _require_ipv6(address: str, value: str, setting: str) -> None:
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise ConfigError(f"invalid {setting} {value!r}: {address!r} is not an IPv6 address; {TARGET_FORMAT}") from None


def _port(text: str, value: str, setting: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"invalid {setting} {value!r}: the port {text!r} is not a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class BastionSettings:
    """How to reach the bastion and what the lifecycle script finds there.

    ``ssh_config``: one ssh_config file read instead of ``/etc/ssh/ssh_config`` and
    ``~/.ssh/config``. ``known_hosts``: a file checked in addition to the user's and
    the system's known_hosts. ``gateway``: a jump host ``[user@]host[:port]``, or
    ``none`` for no jump host, which wins over ProxyJump in ssh_config.
    ``pgpassfile``, ``work_dir`` and ``temp_dir`` are paths on the bastion.
    """

    target: BastionTarget
    ssh_config: Path | None = None
    known_hosts: Path | None = None
    gateway: str = ""
    identity_file: Path | None = None
    pgpassfile: str = ""
    work_dir: str = ""
    temp_dir: str = ""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS

    def with_target(self, value: str) -> BastionSettings:
        return replace(self, target=parse_target(value))


def load_bastion_settings(values: dict[str, Any], base_dir: Path, target: str = "") -> BastionSettings:
    """Build BastionSettings from the ``checkpoint.bastion`` section; ``target`` wins over its ``host``.

    Local paths (ssh_config, known_hosts, identity_file) resolve against ``base_dir``.
    Remote paths must be absolute because the bastion has no notion of this folder.
    """
    host = target or str(values.get("host") or "")
    if not host:
        raise ConfigError("missing bastion: pass --bastion [user@]host[:port] or set checkpoint.bastion.host")
    setting = "--bastion" if target else "checkpoint.bastion.host"

    gateway = str(values.get("gateway") or "")
    if gateway and gateway.lower() != "none":
        for hop in gateway.split(","):
            parse_target(hop, "checkpoint.bastion.gateway")

    return BastionSettings(
        target=parse_target(host, setting),
        ssh_config=_local_path(values.get("ssh_config"), base_dir),
        known_hosts=_local_path(values.get("known_hosts"), base_dir),
        gateway=gateway,
        identity_file=_local_path(values.get("identity_file"), base_dir),
        pgpassfile=_remote_path(values.get("pgpassfile"), "checkpoint.bastion.pgpassfile"),
        work_dir=_remote_path(values.get("work_dir"), "checkpoint.bastion.work_dir"),
        temp_dir=_remote_path(values.get("temp_dir"), "checkpoint.bastion.temp_dir"),
        connect_timeout=_timeout(values.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)),
    )


def _local_path(value: Any, base_dir: Path) -> Path | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _remote_path(value: Any, setting: str) -> str:
    text = str(value or "")
    if text and not text.startswith("/"):
        raise ConfigError(f"invalid {setting} {text!r}: use an absolute path on the bastion")
    return text


def _timeout(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if seconds <= 0:
        raise ConfigError(
            f"invalid checkpoint.bastion.connect_timeout {value!r}: use a number of seconds greater than 0"
        )
    return seconds
