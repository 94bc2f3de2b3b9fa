"""The built-in lab: prod and sandbox on one local PostgreSQL, and a Dolibarr stand-in.

``lab_up`` is idempotent. It starts what is not running and seeds prod once, from a
dump or from the generator. Then it records in ``lab.json`` the settings that every
task falls back to. The sandbox starts empty, because filling it is ``refresh``'s job.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from checkpoint.exceptions import LabError
from checkpoint.files import write_private
from checkpoint.lab.pgcluster import PostgresCluster, wait_for
from checkpoint.outcome import Outcome, Run
from checkpoint.settings import LAB_STATE_FILE, PROJECT_DIR

log = logging.getLogger(__name__)

PROD_DATABASE = "dolibarr"
PROD_OWNER = "dolibarr"
PROD_READER = "dolibarr_prod_reader"
SANDBOX_DATABASE = "dolibarr_sandbox"
SANDBOX_OWNER = "dolibarr_sandbox"
ADMIN_PASSWORD_VARIABLE = "CHECKPOINT_LAB_ADMIN_PASSWORD"
STANDIN_START_TIMEOUT_SECONDS = 30
GENERATED_SIZE_MB = 20
GENERATED = "generated data"


class Lab:
    """Paths of one lab under ``state_dir``."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.cluster = PostgresCluster(state_dir / "postgres")

    prod_documents = property(lambda self: self.state_dir / "documents" / "prod")
    sandbox_documents = property(lambda self: self.state_dir / "documents" / "sandbox")
    instance_id_file = property(lambda self: self.state_dir / "sandbox-instance-id")
    secrets_file = property(lambda self: self.state_dir / "sandbox-secrets.env")
    standin_pid_file = property(lambda self: self.state_dir / "standin.pid")
    standin_port_file = property(lambda self: self.state_dir / "standin.port")
    standin_log = property(lambda self: self.state_dir / "standin.log")
    state_file = property(lambda self: self.state_dir / LAB_STATE_FILE)
    seed_file = property(lambda self: self.state_dir / "prod-seed.json")


def lab_up(state_dir: Path, run: Run, *, from_dump: Path | None = None, documents: Path | None = None) -> None:
    """Start the lab's PostgreSQL and stand-in, seed prod once, and write ``lab.json``."""
    _check_inputs(from_dump, documents)
    lab = Lab(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)

    run.step(start_postgres, lab)
    run.step(ensure_databases, lab)
    run.step(seed_prod_database, lab, from_dump)
    run.step(seed_prod_documents, lab, documents)
    run.step(start_standin, lab)
    run.step(write_lab_state, lab)


def lab_down(state_dir: Path, run: Run, *, purge: bool = False) -> None:
    """Stop the stand-in and PostgreSQL; with ``purge``, delete the lab's folder."""
    lab = Lab(state_dir)
    run.step(stop_standin, lab)
    run.step(stop_postgres, lab)
    if purge:
        run.step(purge_state, lab)


def _check_inputs(from_dump: Path | None, documents: Path | None) -> None:
    if from_dump is not None and not from_dump.is_file():
        raise LabError(f"dump file {from_dump} not found: pass a pg_dump -Fc archive of a Dolibarr database")
    if documents is not None and not documents.exists():
        raise LabError(f"documents {documents} not found: pass a folder or a .tar.gz of a documents tree")
    if documents is not None and documents.is_file() and not tarfile.is_tarfile(documents):
        raise LabError(f"documents {documents} is not a tar archive: pass a folder or a .tar.gz of a documents tree")


# -- PostgreSQL -----------------------------------------------------------------


def start_postgres(lab: Lab) -> Outcome:
    if lab.cluster.is_running():
        lab.cluster.start()
        return Outcome.ok("start_postgres", f"running on port {lab.cluster.port}")
    lab.cluster.init()
    lab.cluster.start()
    return Outcome.changed("start_postgres", f"started on 127.0.0.1:{lab.cluster.port}")


def stop_postgres(lab: Lab) -> Outcome:
    if not (lab.cluster.data_dir / "PG_VERSION").exists() or not lab.cluster.is_running():
        return Outcome.ok("stop_postgres", "not running")
    lab.cluster.stop()
    return Outcome.changed("stop_postgres", "stopped")


def ensure_databases(lab: Lab) -> Outcome:
    """Create prod and sandbox, each owned by its own role, and a read-only role for dumps.

    The sandbox role has CREATEDB, so that checkpoints are template copies of its database.
    """
    existing = set(lab.cluster.psql("SELECT datname FROM pg_database").split())
    if {PROD_DATABASE, SANDBOX_DATABASE} <= existing:
        createdb = lab.cluster.psql(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{SANDBOX_OWNER}'").strip()
        if createdb == "t":
            return Outcome.ok("ensure_databases", f"{PROD_DATABASE} and {SANDBOX_DATABASE} exist")
        lab.cluster.psql(f'ALTER ROLE "{SANDBOX_OWNER}" CREATEDB')
        return Outcome.changed("ensure_databases", f"granted CREATEDB to {SANDBOX_OWNER}")

    lab.cluster.create_role(PROD_OWNER)
    lab.cluster.create_role(SANDBOX_OWNER, createdb=True)
    lab.cluster.create_role(PROD_READER)
    lab.cluster.create_database(PROD_DATABASE, PROD_OWNER)
    lab.cluster.create_database(SANDBOX_DATABASE, SANDBOX_OWNER)
    # The dump role reads everything and owns nothing, so prod stays unwritable by the tool.
    lab.cluster.psql(f"GRANT pg_read_all_data TO {PROD_READER}")
    return Outcome.changed("ensure_databases", f"created {PROD_DATABASE} and {SANDBOX_DATABASE}")


def seed_prod_database(lab: Lab, from_dump: Path | None) -> Outcome:
    source = str(from_dump) if from_dump else GENERATED
    seeded = lab.cluster.psql("SELECT to_regclass('public.llx_user') IS NOT NULL", PROD_DATABASE).strip()
    if seeded == "t":
        _require_same_seed(lab, "database", source, "--from-dump")
        return Outcome.ok("seed_prod_database", "prod already holds a Dolibarr database")

    if from_dump is not None:
        _restore_dump(lab, from_dump)
        password = os.environ.get(ADMIN_PASSWORD_VARIABLE, "")
        _write_secrets(lab, password)
        _record_seed(lab, "database", source)
        message = f"restored {from_dump.name} into prod"
        if not password:
            message += (f"; {ADMIN_PASSWORD_VARIABLE} was not set, so provision will open a browser and wait "
                        "for a person to log in as admin")
        return Outcome.changed("seed_prod_database", message)

    from checkpoint.lab.generator import generate_database

    password = secrets.token_urlsafe(18)
    generate_database(
        lab.cluster.uri(PROD_DATABASE, PROD_OWNER),
        target_mb=GENERATED_SIZE_MB,
        admin_password=password,
        passfile=lab.cluster.pgpass_file,
    )
    _write_secrets(lab, password)
    _record_seed(lab, "database", source)
    return Outcome.changed("seed_prod_database", f"generated about {GENERATED_SIZE_MB} MB of Dolibarr-shaped data")


def _record_seed(lab: Lab, part: str, source: str) -> None:
    """Remember where prod's ``part`` came from, so a later lab.up can tell a different request."""
    record = _seed_record(lab)
    record[part] = source
    lab.seed_file.write_text(json.dumps(record, indent=2) + "\n")


def _seed_record(lab: Lab) -> dict[str, str]:
    try:
        record = json.loads(lab.seed_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _require_same_seed(lab: Lab, part: str, source: str, option: str) -> None:
    """Reject a request to seed prod's ``part`` from another source than the one it has."""
    previous = _seed_record(lab).get(part)
    if previous is None or previous == source or source == GENERATED:
        return
    raise LabError(
        f"the lab's prod {part} was seeded from {previous}, not {source}: run invoke lab.down --purge, "
        f"then invoke lab.up {option} {source}"
    )


def _restore_dump(lab: Lab, dump: Path) -> None:
    result = subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         "-d", lab.cluster.uri(PROD_DATABASE, PROD_OWNER), str(dump)],
        capture_output=True,
        text=True,
        env={**os.environ, **lab.cluster.client_env()},
    )
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no message"]
        raise LabError(f"pg_restore of {dump} into the lab's prod failed: {detail[0]}")


def _write_secrets(lab: Lab, admin_password: str) -> None:
    """Write the sandbox's secrets dotenv; with no password, provisioning waits for a person."""
    lines = ["DOLIBARR_ADMIN_LOGIN=admin\n"]
    if admin_password:
        lines.append(f"DOLIBARR_ADMIN_PASSWORD='{admin_password}'\n")
    write_private(lab.secrets_file, "".join(lines).encode())


# -- documents ------------------------------------------------------------------


def seed_prod_documents(lab: Lab, documents: Path | None) -> Outcome:
    source = str(documents) if documents else GENERATED
    lab.sandbox_documents.mkdir(parents=True, exist_ok=True)
    if lab.prod_documents.exists() and any(lab.prod_documents.iterdir()):
        _require_same_seed(lab, "documents", source, "--documents")
        return Outcome.ok("seed_prod_documents", f"{lab.prod_documents} already filled")
    lab.prod_documents.mkdir(parents=True, exist_ok=True)

    if documents is None:
        from checkpoint.lab.generator import generate_documents

        generate_documents(lab.prod_documents, invoice_count=20)
        _record_seed(lab, "documents", source)
        return Outcome.changed("seed_prod_documents", "generated a documents tree")
    if documents.is_dir():
        shutil.copytree(documents, lab.prod_documents, dirs_exist_ok=True, symlinks=True)
    else:
        _extract_documents(documents, lab.prod_documents)
    _record_seed(lab, "documents", source)
    return Outcome.changed("seed_prod_documents", f"copied {documents.name} into prod's documents")


def _extract_documents(tarball: Path, target: Path) -> None:
    """Extract a tarball whose top folder is ``documents/`` into ``target``."""
    try:
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if len(parts) < 2 or parts[0] != "documents":
                    continue
                member.name = str(Path(*parts[1:]))
                archive.extract(member, target, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise LabError(f"cannot extract documents from {tarball} ({error}): pass a folder or a .tar.gz "
                       "whose top folder is documents/") from None


# -- the stand-in ---------------------------------------------------------------


def start_standin(lab: Lab) -> Outcome:
    if _standin_pid(lab):
        return Outcome.ok("start_standin", f"serving {_standin_url(lab)}")

    if not lab.instance_id_file.exists():
        write_private(lab.instance_id_file, secrets.token_hex(16).encode())
    lab.standin_port_file.unlink(missing_ok=True)

    env = {
        **os.environ,
        **lab.cluster.client_env(),
        "PYTHONPATH": str(PROJECT_DIR),
        "STANDIN_DB_URI": lab.cluster.uri(SANDBOX_DATABASE, SANDBOX_OWNER),
        "STANDIN_INSTANCE_ID": lab.instance_id_file.read_text().strip(),
        "STANDIN_DOCUMENTS_DIR": str(lab.sandbox_documents),
        "STANDIN_PORT": "0",
        "STANDIN_PORT_FILE": str(lab.standin_port_file),
    }
    with open(lab.standin_log, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "checkpoint.lab.standin"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            cwd=PROJECT_DIR,
        )
    lab.standin_pid_file.write_text(str(process.pid))

    def ready() -> bool:
        if process.poll() is not None:
            raise LabError(f"the Dolibarr stand-in exited with code {process.returncode}: see {lab.standin_log}")
        return lab.standin_port_file.exists() and lab.standin_port_file.read_text().strip() != ""

    wait_for(ready, STANDIN_START_TIMEOUT_SECONDS, f"the Dolibarr stand-in to listen (log: {lab.standin_log})")
    return Outcome.changed("start_standin", f"serving {_standin_url(lab)}")


def stop_standin(lab: Lab) -> Outcome:
    pid = _standin_pid(lab)
    if not pid:
        return Outcome.ok("stop_standin", "not running")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    lab.standin_pid_file.unlink(missing_ok=True)
    return Outcome.changed("stop_standin", f"stopped process {pid}")


def _standin_pid(lab: Lab) -> int | None:
    try:
        pid = int(lab.standin_pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of this process that exited stays a zombie until reaped.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def _standin_url(lab: Lab) -> str:
    return f"http://127.0.0.1:{lab.standin_port_file.read_text().strip()}"


# -- state ----------------------------------------------------------------------


def write_lab_state(lab: Lab) -> Outcome:
    state = {
        "sandbox_url": _standin_url(lab),
        "prod_db_uri": lab.cluster.uri(PROD_DATABASE, PROD_READER),
        "sandbox_db_uri": lab.cluster.uri(SANDBOX_DATABASE, SANDBOX_OWNER),
        "prod_documents_dir": str(lab.prod_documents),
        "sandbox_documents_dir": str(lab.sandbox_documents),
        "pgpassfile": str(lab.cluster.pgpass_file),
        "secrets_file": str(lab.secrets_file),
    }
    text = json.dumps(state, indent=2) + "\n"
    if lab.state_file.exists() and lab.state_file.read_text() == text:
        return Outcome.ok("write_lab_state", f"{lab.state_file} is up to date")
    lab.state_file.write_text(text)
    return Outcome.changed("write_lab_state", f"wrote {lab.state_file}")


def purge_state(lab: Lab) -> Outcome:
    if not lab.state_dir.exists():
        return Outcome.ok("purge_state", f"{lab.state_dir} does not exist")
    shutil.rmtree(lab.state_dir)
    return Outcome.changed("purge_state", f"deleted {lab.state_dir}")
