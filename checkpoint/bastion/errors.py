"""Errors of the bastion connection, each one line that names the host and the fix.

paramiko, Fabric and socket errors are translated into these where they enter
(``checkpoint.bastion.ssh`` and ``checkpoint.bastion.remote``).
"""

from __future__ import annotations

from checkpoint.exceptions import CheckpointError


class BastionError(CheckpointError):
    """The bastion could not be reached, trusted or used."""


class HostKeyRejected(BastionError):
    """The host key is not in known_hosts, or differs from the one recorded there."""


class AuthenticationFailed(BastionError):
    """The server rejected every key and method that was offered."""


class HostUnreachable(BastionError):
    """No SSH session could be set up: refused, timed out, unknown name, or failed handshake."""


class ConnectionDropped(BastionError):
    """The SSH connection ended before the remote command reported its exit status."""


class BastionToolsMissing(BastionError):
    """The bastion lacks a tool that the lifecycle script needs, or has one too old."""
