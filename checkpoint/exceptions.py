"""Errors that the tasks turn into one line on stderr and a non-zero exit code.

Library errors (requests, psycopg, Playwright, subprocess) are translated into these
where they enter the package, so a message never carries a traceback or a secret.
"""


class CheckpointError(Exception):
    """Base error: the message names what failed, on which value, and the fix."""

    exit_code = 1


class ConfigError(CheckpointError):
    """A setting is missing or invalid."""

    exit_code = 2


class SafetyError(CheckpointError):
    """An action was rejected because it could harm prod or leave the sandbox unsafe."""

    exit_code = 3


class CommandError(CheckpointError):
    """An external command failed.

    ``output_tail`` contains the last lines of its stderr, already free of secrets.
    """

    def __init__(self, message: str, *, command: str, exit_code: int, output_tail: str = ""):
        super().__init__(message)
        self.command = command
        self.returncode = exit_code
        self.output_tail = output_tail


class LabError(CheckpointError):
    """The built-in lab could not be started, stopped or seeded."""


class BrowserError(CheckpointError):
    """A page did not load or did not look as expected, or the browser failed."""


class LoginError(ConfigError):
    """Dolibarr rejected the admin's login and password."""


class KeyNotAcceptedError(CheckpointError):
    """The sandbox did not accept the new key as the agent's."""


class ProvisionInterrupted(CheckpointError):
    """SIGINT, SIGTERM or SIGHUP arrived while provisioning; the exit code is 128 plus the signal number."""

    def __init__(self, message: str, *, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
