"""Check the bastion's tools, then run the lifecycle script there and stream its output.

No setting reaches a remote command line except the work folder's path and
``temp_dir``, its parent. The other settings travel in an uploaded file of mode
600, inside the work folder of mode 700.
"""

from __future__ import annotations

import logging
import re
import shlex
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection
from invoke.exceptions import UnexpectedExit

from checkpoint.bastion.errors import (
    BastionError,
    BastionToolsMissing,
    ConnectionDropped,
)
from checkpoint.lifecycle import on_signals

log = logging.getLogger(__name__)

WRAPPER = Path(__file__).with_name("run-on-bastion.sh")
WORK_FOLDER_TEMPLATE = "checkpoint-bastion.XXXXXXXXXX"
MIN_BASH_MAJOR = 5
# paramiko reports -1 when the channel closed without an exit-status message.
NO_EXIT_STATUS = -1

PREFLIGHT_COMMAND = """for tool in {tools}; do
  if path="$(command -v "$tool" 2>/dev/null)"; then
    case "$tool" in
      kubectl) version="$(kubectl version --client 2>/dev/null | head -n 1)" ;;
      *) version="$("$tool" --version 2>/dev/null | head -n 1)" ;;
    esac
    printf '%s\\tfound\\t%s\\n' "$tool" "$version"
  else
    printf '%s\\tmissing\\t\\n' "$tool"
  fi
done"""
VERSION_NUMBER = re.compile(r"v?(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class ToolReport:
    """The tools found on the bastion, by name, with the version number each one printed."""

    versions: dict[str, str]

    def summary(self) -> str:
        return ", ".join(f"{tool} {version}" for tool, version in self.versions.items())


def required_tools(transport: str, *, db_only: bool) -> list[str]:
    """Return what the wrapper and the lifecycle script run on the bastion.

    kubectl is required only for the kubectl transport, flock (the local transport's
    lock) only for the local one, and rsync only when documents are copied.
    """
    tools = ["bash", "setsid", "tail", "mktemp", "psql", "pg_dump", "pg_restore"]
    if not db_only:
        tools.append("rsync")
    tools.append("kubectl" if transport == "kubectl" else "flock")
    return tools


def check_tools(connection: Connection, transport: str, *, db_only: bool, pgpassfile: str = "") -> ToolReport:
    """Check every tool and the pgpass file on the bastion; raise one error naming all that is wrong."""
    tools = required_tools(transport, db_only=db_only)
    output = _run(connection, PREFLIGHT_COMMAND.format(tools=" ".join(tools)), "check the tools")

    versions: dict[str, str] = {}
    missing: list[str] = []
    for line in output.splitlines():
        tool, state, version_line = (line.split("\t") + ["", ""])[:3]
        if state != "found":
            missing.append(tool)
            continue
        match = VERSION_NUMBER.search(version_line)
        versions[tool] = match[1] if match else "unknown version"

    problems = []
    if missing:
        hint = "install the PostgreSQL client (Debian: postgresql-client), rsync, flock (Debian: util-linux) and bash 5 there"
        if "kubectl" in missing:
            hint += ", and kubectl (Debian: kubernetes-client)"
        problems.append(f"{', '.join(missing)} not found on PATH ({hint}, or fix PATH for non-interactive SSH sessions)")
    problems += _version_problems(versions)
    if pgpassfile:
        problems += _pgpass_problems(connection, pgpassfile)
    if problems:
        raise BastionToolsMissing(f"bastion {connection.host} is not ready: {'; '.join(problems)}")
    return ToolReport(versions)


def _version_problems(versions: dict[str, str]) -> list[str]:
    problems = []
    bash = versions.get("bash", "")
    if bash[:1].isdigit() and int(bash.split(".")[0]) < MIN_BASH_MAJOR:
        problems.append(f"bash {bash} is older than {MIN_BASH_MAJOR}")

    # pg_restore rejects archives written by a newer pg_dump.
    dump, restore = _major(versions.get("pg_dump", "")), _major(versions.get("pg_restore", ""))
    if dump and restore and dump > restore:
        problems.append(f"pg_restore {versions['pg_restore']} is older than pg_dump {versions['pg_dump']}")
    return problems


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def _pgpass_problems(connection: Connection, path: str) -> list[str]:
    """Check the pgpass file through SFTP, so that its path appears on no command line."""
    try:
        attributes = connection.sftp().stat(path)
    except FileNotFoundError:
        return [f"pgpass file {path} not found (fix checkpoint.bastion.pgpassfile)"]
    except (OSError, paramiko.SSHException) as error:
        return [f"pgpass file {path} cannot be read ({error})"]

    mode = stat.S_IMODE(attributes.st_mode or 0)
    if not stat.S_ISREG(attributes.st_mode or 0):
        return [f"pgpass file {path} is not a regular file"]
    if mode & 0o077:
        return [f"pgpass file {path} has mode {mode:o}, which libpq ignores: run chmod 600 {shlex.quote(path)}"]
    return []


def _run(connection: Connection, command: str, purpose: str) -> str:
    """Run a fixed command (no setting in it) and return its stdout; translate failures."""
    try:
        result = connection.run(command, hide=True, in_stream=False, warn=False)
    except UnexpectedExit as error:
        tail = (error.result.stderr or "").strip().splitlines()[-1:] or ["no error output"]
        raise BastionError(
            f"command to {purpose} failed on bastion {connection.host} with exit code "
            f"{error.result.exited}: {tail[0]}"
        ) from None
    except (OSError, paramiko.SSHException, EOFError) as error:
        raise ConnectionDropped(f"connection to bastion {connection.host} dropped while trying to {purpose}: "
                                f"{error or type(error).__name__}; run the task again") from None
    return result.stdout


class RemoteProcess:
    """The lifecycle script running on the bastion, shaped like the ``subprocess.Popen`` the local run uses.

    ``stdout`` and ``stderr`` iterate over decoded lines as they arrive. ``wait``
    returns the exit code, or raises ConnectionDropped when the connection ended first.
    """

    def __init__(self, channel: paramiko.Channel, host: str):
        self.channel = channel
        self.host = host
        self.stdout = _lines(channel.makefile("rb"))
        self.stderr = _lines(channel.makefile_stderr("rb"))

    def wait(self) -> int:
        status = self.channel.recv_exit_status()
        if status == NO_EXIT_STATUS:
            raise ConnectionDropped(
                f"connection to bastion {self.host} dropped before the lifecycle script ended: the bastion sends "
                "it SIGTERM, so an open restore rolls back and the sandbox stays as it was, unless the restore "
                "had already committed; run invoke status to see which, and run the task again"
            )
        return status

    def stop(self) -> None:
        """Close the channel's stdin: the wrapper then stops the script, whose traps restore the sandbox."""
        if not self.channel.closed:
            log.warning("stopping the lifecycle script on bastion %s", self.host)
            self.channel.shutdown_write()


def _lines(stream) -> Iterator[str]:
    for raw in stream:
        yield raw.decode("utf-8", errors="replace")


@contextmanager
def start_lifecycle(
    connection: Connection, script: Path, environment: dict[str, str], arguments: list[str], temp_dir: str = "",
    files: dict[str, Path] | None = None,
) -> Iterator[RemoteProcess]:
    """Upload the script into a new private folder on the bastion, start it, and yield it.

    ``files`` maps an environment variable to a local file: the file is uploaded into
    the work folder and the variable names the remote copy.

    The folder is removed by the wrapper when the script ends, also after a dropped
    connection. If the wrapper never started, this function removes it itself.
    """
    work_folder = _make_work_folder(connection, temp_dir)
    started = False
    try:
        _upload(connection, work_folder, script, environment, files or {})
        channel = connection.create_session()
        command = " ".join(["bash", shlex.quote(f"{work_folder}/{WRAPPER.name}")] + arguments)
        channel.exec_command(command)
        started = True
        log.info("started the lifecycle script on bastion %s in %s", connection.host, work_folder)
        process = RemoteProcess(channel, connection.host)
        with on_signals(lambda signum: process.stop()):
            yield process
    finally:
        if not started:
            _remove_work_folder(connection, work_folder)


def _make_work_folder(connection: Connection, temp_dir: str) -> str:
    parent = f" -p {shlex.quote(temp_dir)}" if temp_dir else ""
    folder = _run(connection, f"mktemp -d{parent} -t {WORK_FOLDER_TEMPLATE}", "create a work folder").strip()
    mode = stat.S_IMODE(connection.sftp().stat(folder).st_mode or 0)
    if mode != 0o700:
        _remove_work_folder(connection, folder)
        raise BastionError(f"work folder {folder} on bastion {connection.host} has mode {mode:o}, not 700: "
                           "check mktemp there")
    return folder


def _upload(
    connection: Connection, folder: str, script: Path, environment: dict[str, str], attachments: dict[str, Path]
) -> None:
    """Upload the wrapper, the script with the lib/*.sh files it sources, the attachments and the settings."""
    sftp = connection.sftp()
    environment = dict(environment)
    files = {WRAPPER.name: WRAPPER.read_bytes(), "sandbox-lifecycle.sh": script.read_bytes()}
    for variable, local_path in attachments.items():
        name = f"{variable.lower()}-{local_path.name}"
        files[name] = local_path.read_bytes()
        environment[variable] = f"{folder}/{name}"
    files["environment"] = environment_file(environment).encode()
    libraries = sorted((script.parent / "lib").glob("*.sh"))
    if libraries:
        sftp.mkdir(f"{folder}/lib", 0o700)
    for library in libraries:
        files[f"lib/{library.name}"] = library.read_bytes()
    for name, data in files.items():
        path = f"{folder}/{name}"
        with sftp.open(path, "wbx") as handle:
            handle.chmod(0o600)
            handle.write(data)
    log.info("uploaded %s to bastion %s", ", ".join(files), connection.host)


def environment_file(environment: dict[str, str]) -> str:
    """Return ``export NAME=value`` lines, quoted for bash."""
    lines = []
    for name, value in environment.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ValueError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}\n")
    return "".join(lines)


def _remove_work_folder(connection: Connection, folder: str) -> None:
    try:
        connection.run(f"rm -rf -- {shlex.quote(folder)}", hide=True, in_stream=False, warn=True)
    except (OSError, paramiko.SSHException, EOFError) as error:
        log.warning("could not remove work folder %s on bastion %s: %s", folder, connection.host, error)


__all__ = ["RemoteProcess", "ToolReport", "check_tools", "environment_file", "required_tools", "start_lifecycle"]
