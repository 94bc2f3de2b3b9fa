"""Open a Fabric connection to the bastion, through jump hosts, with strict host key checking.

Fabric 3.2 reads ssh_config (User, Port, HostName, IdentityFile, ProxyJump) but
builds the jump connections itself with paramiko's ``AutoAddPolicy``, and treats
``ProxyJump none`` as a host named "none". This module therefore builds the jump
chain itself: ``none`` means no jump host, an explicit ``gateway`` setting wins over
ssh_config, and every hop and the bastion get ``RejectPolicy`` and known_hosts.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shlex
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
from fabric import Config, Connection

from checkpoint.bastion.errors import (
    AuthenticationFailed,
    HostKeyRejected,
    HostUnreachable,
)
from checkpoint.bastion.target import BastionSettings, BastionTarget, parse_target

log = logging.getLogger(__name__)

USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
KEEPALIVE_SECONDS = 30


def fingerprint(key: paramiko.PKey) -> str:
    """Return the key's fingerprint as OpenSSH prints it: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@contextmanager
def bastion_connection(settings: BastionSettings) -> Iterator[Connection]:
    """Yield an open connection to the bastion; close it and every jump host on exit."""
    config = _fabric_config(settings)
    hops = _open_jump_chain(settings, config)
    connection = None
    try:
        gateway = hops[-1] if hops else _proxy_command(settings, config)
        connection = _connection(settings.target, config, settings, gateway)
        _open(connection, settings)
        yield connection
    finally:
        if connection is not None:
            connection.close()
        for hop in reversed(hops):
            hop.close()


def _fabric_config(settings: BastionSettings) -> Config:
    """Return a Fabric config that reads only ``settings.ssh_config`` when set, else the usual files."""
    overrides = {"timeouts": {"connect": settings.connect_timeout}, "load_ssh_configs": True}
    if settings.ssh_config is not None:
        if not settings.ssh_config.is_file():
            raise HostUnreachable(f"ssh config file {settings.ssh_config} not found: fix checkpoint.bastion.ssh_config")
        return Config(overrides=overrides, runtime_ssh_path=str(settings.ssh_config))
    return Config(overrides=overrides)


def _jump_hosts(settings: BastionSettings, config: Config) -> list[str]:
    """Return the jump hosts in connection order: the explicit gateway, else ssh_config's ProxyJump."""
    if settings.gateway:
        value = settings.gateway
    else:
        value = config.base_ssh_config.lookup(settings.target.host).get("proxyjump", "")
    if not value or value.strip().lower() == "none":
        return []
    return [hop.strip() for hop in value.split(",") if hop.strip()]


def _open_jump_chain(settings: BastionSettings, config: Config) -> list[Connection]:
    """Connect to each jump host through the previous one.

    NOTE: a jump host's own ProxyJump in ssh_config is not followed, unlike OpenSSH's.
    """
    hops: list[Connection] = []
    try:
        for hop in _jump_hosts(settings, config):
            target = parse_target(hop, "jump host (ProxyJump or checkpoint.bastion.gateway)")
            connection = _connection(target, config, settings, hops[-1] if hops else False)
            _open(connection, settings, role="jump host")
            hops.append(connection)
    except BaseException:
        for connection in reversed(hops):
            connection.close()
        raise
    return hops


def _proxy_command(settings: BastionSettings, config: Config) -> str | bool:
    """Return ssh_config's ProxyCommand for the bastion, which Fabric runs itself, or False."""
    if settings.gateway:
        return False
    command = config.base_ssh_config.lookup(settings.target.host).get("proxycommand")
    return command or False


def _connection(target: BastionTarget, config: Config, settings: BastionSettings, gateway) -> Connection:
    connect_kwargs = {}
    if settings.identity_file is not None:
        connect_kwargs["key_filename"] = [str(settings.identity_file)]
    connection = Connection(
        target.host,
        user=target.user,
        port=target.port,
        config=config.clone(),
        gateway=gateway,
        connect_kwargs=connect_kwargs,
        connect_timeout=int(settings.connect_timeout),
    )
    known_hosts = _known_hosts_files(connection, settings)
    connection.client.set_missing_host_key_policy(_RejectUnknownHost(connection, known_hosts))
    for path in known_hosts:
        if path.is_file():
            connection.client.get_host_keys().load(str(path))
    return connection


def _known_hosts_files(connection: Connection, settings: BastionSettings) -> list[Path]:
    """Return the files to check, OpenSSH's order: the configured file first, then the user's, then the system's."""
    user_files = connection.ssh_config.get("userknownhostsfile", USER_KNOWN_HOSTS)
    files = [Path(name).expanduser() for name in shlex.split(user_files)]
    if settings.known_hosts is not None:
        files.insert(0, settings.known_hosts)
    files.append(SYSTEM_KNOWN_HOSTS)
    return files


def _open(connection: Connection, settings: BastionSettings, role: str = "bastion") -> None:
    """Open ``connection``; translate what paramiko and sockets raise into one-line BastionErrors."""
    try:
        _connect(connection, settings, role)
    except BaseException:
        connection.close()
        raise
    connection.transport.set_keepalive(KEEPALIVE_SECONDS)
    log.info("connected to %s %s", role, _address(connection))


def _connect(connection: Connection, settings: BastionSettings, role: str) -> None:
    address = _address(connection)
    try:
        connection.open()
    except paramiko.BadHostKeyException as error:
        known_hosts = _known_hosts_files(connection, settings)
        raise HostKeyRejected(_changed_key_message(connection, role, error, known_hosts)) from None
    except paramiko.AuthenticationException as error:
        raise AuthenticationFailed(_authentication_message(connection, role, settings, error)) from None
    except paramiko.ChannelException as error:
        raise HostUnreachable(
            f"the jump host could not reach {role} {address}: {error.text}; "
            "check the host name and port, and that the jump host allows TCP forwarding"
        ) from None
    except TimeoutError:
        raise HostUnreachable(
            f"connection to {role} {address} timed out after {settings.connect_timeout:.0f} s: "
            "check the host, port and firewall, or raise checkpoint.bastion.connect_timeout"
        ) from None
    except socket.gaierror as error:
        raise HostUnreachable(f"{role} host name {connection.host!r} did not resolve ({error.strerror}): "
                              "check the name, or its HostName in ssh_config") from None
    except (OSError, paramiko.SSHException, EOFError) as error:
        reason = str(error) or type(error).__name__
        raise HostUnreachable(f"cannot connect to {role} {address}: {reason}; check that sshd runs there") from None


def _address(connection: Connection) -> str:
    host = f"[{connection.host}]" if ":" in connection.host else connection.host
    return f"{connection.user}@{host}:{connection.port}"


def _host_key_name(connection: Connection) -> str:
    """Return the name that known_hosts uses: ``host`` on port 22, else ``[host]:port``."""
    if int(connection.port) == 22:
        return connection.host
    return f"[{connection.host}]:{connection.port}"


def _keyscan_command(connection: Connection, key: paramiko.PKey, known_hosts: Path) -> str:
    return (
        f"ssh-keyscan -p {connection.port} -t {key.get_name()} {shlex.quote(connection.host)}"
        f" >> {shlex.quote(str(known_hosts))}"
    )


class _RejectUnknownHost(paramiko.RejectPolicy):
    """Reject a host missing from known_hosts, with its fingerprint and the command that accepts it."""

    def __init__(self, connection: Connection, known_hosts: list[Path]):
        self.connection = connection
        self.target_file = known_hosts[0]

    def missing_host_key(self, client, hostname, key):
        name = _host_key_name(self.connection)
        raise HostKeyRejected(
            f"host key of {name} is not in known_hosts ({key.get_name()} {fingerprint(key)}): "
            f"check this fingerprint out of band (on that host: ssh-keygen -lf {_host_key_file(key)}), then run "
            f"{_keyscan_command(self.connection, key, self.target_file)}"
        )


def _host_key_file(key: paramiko.PKey) -> str:
    """Return where Debian's sshd keeps the public host key of this type."""
    name = key.get_name()
    kind = "rsa"
    if "ed25519" in name:
        kind = "ed25519"
    elif name.startswith("ecdsa"):
        kind = "ecdsa"
    return f"/etc/ssh/ssh_host_{kind}_key.pub"


def _changed_key_message(
    connection: Connection, role: str, error: paramiko.BadHostKeyException, known_hosts: list[Path]
) -> str:
    name = _host_key_name(connection)
    holder = _file_holding(name, known_hosts)
    return (
        f"host key of {role} {name} CHANGED: it offers {error.key.get_name()} {fingerprint(error.key)}, "
        f"known_hosts {holder} has {fingerprint(error.expected_key)}; this may be an attack. "
        f"If the change is expected, check the new fingerprint out of band, then run "
        f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(holder))} && "
        f"{_keyscan_command(connection, error.key, holder)}"
    )


def _file_holding(name: str, known_hosts: list[Path]) -> Path:
    """Return the known_hosts file that has an entry for ``name``, else the first one."""
    for path in known_hosts:
        if path.is_file() and paramiko.HostKeys(str(path)).lookup(name):
            return path
    return known_hosts[0]


def _authentication_message(connection: Connection, role: str, settings: BastionSettings, error) -> str:
    keys = connection.connect_kwargs.get("key_filename") or []
    if keys:
        offered = "key files " + ", ".join(
            f"{name}{'' if Path(name).expanduser().is_file() else ' (not found)'}" for name in keys
        )
    else:
        offered = "the ssh agent and ~/.ssh/id_* keys (no IdentityFile set)"
    return (
        f"authentication failed for {role} {_address(connection)} with {offered}: "
        f"{error}; add the public key to the user's authorized_keys there, or set IdentityFile in ssh_config"
    )
