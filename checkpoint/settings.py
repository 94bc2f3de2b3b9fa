"""Settings, gathered from one place: Invoke's configuration.

Invoke merges its defaults (``DEFAULTS`` below), ``invoke.yaml`` beside ``tasks.py``,
``~/.invoke.yaml``, a file given with ``invoke -f FILE``, and ``INVOKE_CHECKPOINT_*``
environment variables (for example ``INVOKE_CHECKPOINT_SANDBOX_URL``). Secrets never
live there: they are read from dotenv files whose paths the configuration names.

Relative paths resolve against the folder of the file given with ``-f``, or else the
project folder that contains ``tasks.py``, never against the current directory, so a run
from another folder reads and writes the same files.

A setting left empty falls back to the built-in lab, whose state ``invoke lab.up``
records in ``<lab.state_dir>/lab.json``. With no configuration at all, every task
targets the lab.
"""

from __future__ import annotations

import ipaddress
import json
import math
import posixpath
import socket
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from checkpoint.exceptions import ConfigError, SafetyError
from checkpoint.guards import DEFAULT_APPLICATION_TITLE, Guard, configured_guards

PROJECT_DIR = Path(__file__).resolve().parent.parent
LAB_STATE_FILE = "lab.json"

# Bank read (111, banque/lire) is the right the agent rehearses with. Read users (251)
# is the least privilege that makes ``GET /api/index.php/users/info`` return 200 on
# Dolibarr 20.0.2, which otherwise needs 342 (modify own user).
DEFAULT_AGENT_RIGHTS = [111, 251]

DEFAULTS: dict[str, Any] = {
    "sandbox": {
        "url": "",
        "prod_url": "",
        "secrets_file": "",
        "http_timeout": 10.0,
    },
    "agent": {
        "login": "ai_agent_sandbox",
        "rights": DEFAULT_AGENT_RIGHTS,
        "env_file": "",
        "env_key_var": "DOLIBARR_API_KEY",
        "env_url_var": "DOLIBARR_URL",
        "key_file": "",
    },
    "provision": {
        "chromium": "/usr/bin/chromium",
        "headed_login_timeout": 300.0,
        "artifacts_dir": "artifacts",
        "save_trace": False,
    },
    "lifecycle": {
        "script": "ops/sandbox/sandbox-lifecycle.sh",
        "transport": "local",
        "prod_db_uri": "",
        "sandbox_db_uri": "",
        "prod_documents_dir": "",
        "sandbox_documents_dir": "",
        "pgpassfile": "",
        "work_dir": "",
        # pg_dump -Z level of the local transport's dump, 0 (none) to 9.
        "dump_compression": 1,
        # The kubectl transport: see ops/sandbox/README.md for each value.
        "kubeconfig": "",
        "prod_kube_context": "",
        "prod_namespace": "",
        "prod_db_workload": "",
        "prod_db_container": "",
        "prod_db_name": "",
        "prod_db_role": "",
        "prod_db_dump_dir": "",
        "prod_app_workload": "",
        "prod_app_container": "",
        "prod_documents_path": "",
        "sandbox_kube_context": "",
        "sandbox_namespace": "",
        "sandbox_db_workload": "",
        "sandbox_db_container": "",
        "sandbox_db_name": "",
        "sandbox_db_role": "",
        "sandbox_db_dump_dir": "",
        "sandbox_app_workload": "",
        "sandbox_app_container": "",
        "sandbox_documents_path": "",
        "argocd_application": "",
        "argocd_namespace": "argocd",
        "argocd_kube_context": "",
        "argocd_pause_owner": False,
        "lock_max_age": 14400,
        "lock_holder": "",
        "kube_wait_seconds": 300,
    },
    "checkpoints": {
        # Folder of the checkpoints; empty means beside the sandbox documents folder,
        # "<sandbox_documents_dir>.checkpoints", so that snapshots can be hard links.
        "dir": "",
        "keep": 3,
    },
    "lab": {
        "state_dir": ".lab",
    },
    # The default guards always apply. ``extra`` adds guards, each a mapping with
    # ``name``, optional ``description``, and either ``const: {NAME: value}`` or
    # ``apply`` (SQL) and ``check`` (a SELECT of one boolean, true when in effect).
    "guards": {
        "catch_all_address": "",
        "application_title": DEFAULT_APPLICATION_TITLE,
        "extra": [],
    },
    "bastion": {
        "host": "",
        "ssh_config": "",
        "known_hosts": "",
        "gateway": "",
        "identity_file": "",
        "pgpassfile": "",
        "work_dir": "",
        "temp_dir": "",
        "connect_timeout": 15.0,
    },
}

LOCAL = "this machine"
LOGIN_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,50}$")


@dataclass(frozen=True)
class AgentSettings:
    login: str
    rights: tuple[int, ...]
    env_file: Path
    env_key_var: str
    env_url_var: str
    key_file: Path


@dataclass(frozen=True)
class LifecycleSettings:
    script: Path
    transport: str
    prod_db_uri: str
    sandbox_db_uri: str
    prod_documents_dir: Path | None
    sandbox_documents_dir: Path | None
    pgpassfile: Path | None
    work_dir: Path | None
    checkpoint_dir: Path | None = None
    checkpoint_keep: int = 3
    dump_compression: int = 1
    # Environment variables of the kubectl transport, built from the settings above.
    kube_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    base_dir: Path
    sandbox_url: str
    prod_url: str
    secrets_file: Path
    http_timeout: float
    agent: AgentSettings
    chromium: Path
    headed_login_timeout: float
    artifacts_dir: Path
    # A trace contains the admin's session cookie, so it is saved only on request.
    save_trace: bool
    lifecycle: LifecycleSettings
    lab_dir: Path
    uses_lab: bool
    # Checked only when a task runs on a bastion, by checkpoint.bastion.load_bastion_settings.
    bastion: dict[str, Any] = field(default_factory=dict)
    # The default guards, then those of checkpoint.guards.extra.
    guards: tuple[Guard, ...] = ()


def load_settings(config: Any, *, read_lab: bool = True) -> Settings:
    """Build ``Settings`` from an Invoke config (or a plain dict) and validate them.

    ``read_lab=False`` skips ``lab.json``, for the lab's own tasks, which must work
    when that file is missing or broken.
    """
    section = _as_dict(config.get("checkpoint") if hasattr(config, "get") else None)
    merged = _merge(DEFAULTS, section)
    base_dir = _base_dir(config)

    # Defaults name folders of this project; only a value the user set is relative to -f's file.
    lab_base = PROJECT_DIR if merged["lab"]["state_dir"] == DEFAULTS["lab"]["state_dir"] else base_dir
    lab_dir = _resolve(lab_base, merged["lab"]["state_dir"])
    uses_lab = not merged["sandbox"]["url"]
    lab = read_lab_state(lab_dir) if uses_lab and read_lab else {}

    def pick(section_name: str, key: str, lab_key: str | None = None) -> str:
        value = merged[section_name][key]
        if value in ("", None) and uses_lab:
            return lab.get(lab_key or key, "")
        return value

    settings = Settings(
        base_dir=base_dir,
        sandbox_url=str(pick("sandbox", "url", "sandbox_url")).rstrip("/"),
        prod_url=str(pick("sandbox", "prod_url", "prod_url")).rstrip("/"),
        secrets_file=_resolve(base_dir, pick("sandbox", "secrets_file"), lab_dir, "sandbox-secrets.env"),
        http_timeout=_positive_float(merged["sandbox"]["http_timeout"], "checkpoint.sandbox.http_timeout"),
        agent=_agent_settings(merged["agent"], base_dir, lab_dir, uses_lab),
        chromium=_resolve(base_dir, merged["provision"]["chromium"]),
        headed_login_timeout=_positive_float(
            merged["provision"]["headed_login_timeout"], "checkpoint.provision.headed_login_timeout"
        ),
        artifacts_dir=_resolve(
            PROJECT_DIR if merged["provision"]["artifacts_dir"] == DEFAULTS["provision"]["artifacts_dir"] else base_dir,
            merged["provision"]["artifacts_dir"],
        ),
        save_trace=_as_bool(merged["provision"]["save_trace"], "checkpoint.provision.save_trace"),
        lifecycle=_lifecycle_settings(merged["lifecycle"], base_dir, pick, merged["checkpoints"]),
        lab_dir=lab_dir,
        uses_lab=uses_lab,
        bastion=dict(merged["bastion"]),
        guards=configured_guards(merged["guards"]),
    )
    _validate_url(settings.sandbox_url, "checkpoint.sandbox.url", required=not uses_lab)
    _validate_url(settings.prod_url, "checkpoint.sandbox.prod_url", required=False)
    _reject_prod_as_sandbox(settings)
    return settings


def _reject_prod_as_sandbox(settings: Settings) -> None:
    if settings.prod_url and _same_origin(settings.sandbox_url, settings.prod_url):
        raise SafetyError(
            f"checkpoint.sandbox.url {settings.sandbox_url} is prod's URL: point it at the sandbox, never at prod"
        )


def _same_origin(first: str, second: str) -> bool:
    """Tell whether two URLs reach the same Dolibarr, whatever the spelling.

    Hosts compare by the addresses they resolve to, so ``localhost`` equals
    ``127.0.0.1``. Default ports are filled in and a trailing ``/index.php`` or
    ``/`` is ignored. A host that does not resolve compares by name.
    """
    a, b = urlsplit(first), urlsplit(second)
    if _effective_port(a) != _effective_port(b) or _dolibarr_root(a.path) != _dolibarr_root(b.path):
        return False
    return bool(_addresses(a.hostname or "") & _addresses(b.hostname or ""))


def _effective_port(parts) -> int | None:
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _dolibarr_root(path: str) -> str:
    path = posixpath.normpath("/" + unquote(path))
    if path.endswith("/index.php"):
        path = path[: -len("/index.php")]
    return path.rstrip("/")


def _addresses(host: str) -> set[str]:
    """Return the addresses ``host`` reaches, with every local one counted as loopback.

    A server bound to the unspecified address accepts connections on loopback too, and an
    IPv4-mapped IPv6 address is the IPv4 address, so both fold into one form.
    """
    name = host.lower().rstrip(".")
    try:
        found = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except (OSError, UnicodeError):
        found = set()
    addresses = {name}
    for text in found | {name}:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        addresses.add(LOCAL if address.is_loopback or address.is_unspecified else str(address))
    return addresses


def read_lab_state(lab_dir: Path) -> dict[str, Any]:
    """Return what ``invoke lab.up`` recorded, or an empty dict when the lab was never started."""
    state_file = lab_dir / LAB_STATE_FILE
    if not state_file.exists():
        return {}
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"lab state {state_file} is unreadable ({error}): run invoke lab.up, which rewrites it"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"lab state {state_file} is not a JSON object: run invoke lab.up, which rewrites it")
    return state


def require_sandbox_url(settings: Settings) -> str:
    """Return the sandbox URL, or explain how to get one."""
    if settings.sandbox_url:
        return settings.sandbox_url
    raise ConfigError(
        "no sandbox URL: set checkpoint.sandbox.url in invoke.yaml (or INVOKE_CHECKPOINT_SANDBOX_URL), "
        "or start the built-in lab with invoke lab.up"
    )


def _agent_settings(values: dict[str, Any], base_dir: Path, lab_dir: Path, uses_lab: bool) -> AgentSettings:
    login = str(values["login"])
    if not LOGIN_PATTERN.match(login):
        raise ConfigError(
            f"invalid checkpoint.agent.login {login!r}: use 1 to 50 letters, digits, '_', '.', '@' or '-'"
        )

    agent_dir = lab_dir / "agent" if uses_lab else base_dir
    return AgentSettings(
        login=login,
        rights=_rights(values["rights"]),
        env_file=_resolve(base_dir, values["env_file"], agent_dir, ".env"),
        env_key_var=_env_var_name(values["env_key_var"], "checkpoint.agent.env_key_var"),
        env_url_var=_env_var_name(values["env_url_var"], "checkpoint.agent.env_url_var"),
        key_file=_resolve(base_dir, values["key_file"], agent_dir, "api-key"),
    )


def _lifecycle_settings(values: dict[str, Any], base_dir: Path, pick, checkpoints: dict[str, Any]) -> LifecycleSettings:
    transport = str(values["transport"])
    if transport not in ("local", "kubectl"):
        raise ConfigError(f"invalid checkpoint.lifecycle.transport {transport!r}: use local or kubectl")

    def optional_path(key: str) -> Path | None:
        value = pick("lifecycle", key)
        return _resolve(base_dir, value) if value else None

    prod_db_uri = str(pick("lifecycle", "prod_db_uri"))
    sandbox_db_uri = str(pick("lifecycle", "sandbox_db_uri"))
    _validate_db_uri(prod_db_uri, "checkpoint.lifecycle.prod_db_uri", prod=True)
    _validate_db_uri(sandbox_db_uri, "checkpoint.lifecycle.sandbox_db_uri", prod=False)

    return LifecycleSettings(
        script=_resolve(PROJECT_DIR, values["script"]),
        transport=transport,
        prod_db_uri=prod_db_uri,
        sandbox_db_uri=sandbox_db_uri,
        prod_documents_dir=optional_path("prod_documents_dir"),
        sandbox_documents_dir=optional_path("sandbox_documents_dir"),
        pgpassfile=optional_path("pgpassfile"),
        work_dir=optional_path("work_dir"),
        checkpoint_dir=_checkpoint_dir(checkpoints["dir"], base_dir, transport),
        checkpoint_keep=_positive_int(checkpoints["keep"], "checkpoint.checkpoints.keep"),
        dump_compression=_compression_level(values["dump_compression"], "checkpoint.lifecycle.dump_compression"),
        kube_env=_kube_environment(values, base_dir),
    )


def _checkpoint_dir(value: Any, base_dir: Path, transport: str) -> Path | None:
    """Return the checkpoint folder. With kubectl, it must be an absolute path inside the sandbox's Dolibarr pod."""
    if not value:
        return None
    if transport != "kubectl":
        return _resolve(base_dir, value)
    if not str(value).startswith("/"):
        raise ConfigError(
            f"invalid checkpoint.checkpoints.dir {value!r}: with the kubectl transport it is a folder inside the "
            "sandbox's Dolibarr container, so use an absolute path"
        )
    return Path(str(value))


def _positive_int(value: Any, name: str) -> int:
    # YAML turns `true` into a bool and `2.7` into a float, and int() would accept both.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise ConfigError(f"invalid {name} {value!r}: use a whole number greater than 0")
    if number <= 0:
        raise ConfigError(f"invalid {name} {value!r}: use a whole number greater than 0")
    return number


def _compression_level(value: Any, name: str) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]", str(value).strip()):
        raise ConfigError(f"invalid {name} {value!r}: use a pg_dump compression level from 0 (none) to 9")
    return int(value)


def _validate_db_uri(uri: str, name: str, *, prod: bool) -> None:
    """Reject a URI that libpq cannot parse, that carries a password, or that overrides prod's options.

    libpq's own parser decodes the URI, so a percent-encoded parameter name such as
    ``p%61ssword`` is caught too. The messages never repeat the URI, which may hold a secret.
    """
    if not uri:
        return
    try:
        parameters = conninfo_to_dict(uri)
    except psycopg.ProgrammingError as error:
        # Only this libpq message is known to quote nothing but a parameter name.
        first_line = str(error).splitlines()[0]
        reason = first_line if first_line.startswith("invalid URI query parameter") else "libpq cannot parse it"
        raise ConfigError(f"invalid {name}: {reason}; use postgresql://USER@HOST:PORT/DATABASE") from None
    if parameters.keys() & {"password", "sslpassword"}:
        raise ConfigError(f"invalid {name}: it contains a password; put passwords in the pgpass file instead")
    if prod and "options" in parameters:
        raise ConfigError(
            f"invalid {name}: it sets options, which could turn off the read-only default of prod connections; "
            "remove options from the URI"
        )


# Settings of the kubectl transport whose environment variable is not the upper-case key.
KUBE_ENV_NAMES = {
    "lock_max_age": "LIFECYCLE_LOCK_MAX_AGE_SECONDS",
    "lock_holder": "LIFECYCLE_LOCK_HOLDER",
    "kube_wait_seconds": "LIFECYCLE_KUBE_WAIT_SECONDS",
}
KUBE_KEY_PREFIXES = ("prod_", "sandbox_", "argocd_")
KUBE_KEYS_WITH_OTHER_PREFIX = ("kubeconfig", *KUBE_ENV_NAMES)


def _kube_environment(values: dict[str, Any], base_dir: Path) -> dict[str, str]:
    """Return the kubectl transport's environment variables for the settings that are set."""
    env: dict[str, str] = {}
    for key, value in values.items():
        kube_key = key in KUBE_KEYS_WITH_OTHER_PREFIX or (
            key.startswith(KUBE_KEY_PREFIXES) and not key.endswith(("_uri", "_documents_dir"))
        )
        if not kube_key or value in ("", None):
            continue
        if key == "kubeconfig":
            env["KUBECONFIG"] = str(_resolve(base_dir, value))
        elif key == "argocd_pause_owner":
            env["ARGOCD_PAUSE_OWNER"] = "1" if _as_bool(value, "checkpoint.lifecycle.argocd_pause_owner") else "0"
        else:
            env[KUBE_ENV_NAMES.get(key, key.upper())] = str(value)
    return env


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"invalid {name} {value!r}: use true or false")


def _rights(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    try:
        rights = tuple(sorted({int(item) for item in value}))
    except (TypeError, ValueError):
        raise ConfigError(
            f"invalid checkpoint.agent.rights {value!r}: use a list of Dolibarr right ids, such as [111, 251]"
        ) from None
    if not rights or any(right <= 0 for right in rights):
        raise ConfigError(f"invalid checkpoint.agent.rights {value!r}: use positive right ids, such as [111, 251]")
    return rights


def _env_var_name(value: Any, name: str) -> str:
    text = str(value)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", text):
        raise ConfigError(f"invalid {name} {text!r}: use a shell variable name such as DOLIBARR_API_KEY")
    return text


def _validate_url(url: str, name: str, *, required: bool) -> None:
    if not url:
        if required:
            raise ConfigError(f"missing {name}: set it to the sandbox's base URL, such as https://erp-sandbox.example")
        return
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port outside 0-65535
    except ValueError as error:
        raise ConfigError(f"invalid {name} {url!r} ({error}): use an http:// or https:// URL with a host") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid {name} {url!r}: use an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigError(f"invalid {name}: remove the credentials from the URL; secrets belong in dotenv files")


def _positive_float(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid {name} {value!r}: use a number of seconds greater than 0") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"invalid {name} {value!r}: use a number of seconds greater than 0")
    return number


def _resolve(base_dir: Path, value: Any, default_dir: Path | None = None, default_name: str = "") -> Path:
    if value in ("", None):
        if default_dir is None:
            return base_dir
        return default_dir / default_name
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _base_dir(config: Any) -> Path:
    runtime_path = getattr(config, "_runtime_path", None)
    if runtime_path:
        return Path(runtime_path).resolve().parent
    return PROJECT_DIR


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "_config"):
        return _as_dict(dict(value._config))
    if isinstance(value, dict):
        return {key: _as_dict(item) if isinstance(item, dict) or hasattr(item, "_config") else item
                for key, item in value.items()}
    return {}


def _merge(defaults: dict[str, Any], overrides: dict[str, Any], prefix: str = "checkpoint") -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}.{unknown[0]}: check the spelling against the README's settings table"
        )

    merged: dict[str, Any] = {}
    for key, default in defaults.items():
        override = overrides.get(key)
        if isinstance(default, dict):
            merged[key] = _merge(default, override if isinstance(override, dict) else {}, f"{prefix}.{key}")
        else:
            merged[key] = default if override is None else override
    return merged
