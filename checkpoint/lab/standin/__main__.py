"""Run the stand-in as a process, configured by environment variables.

``STANDIN_DB_URI`` (no password: libpq reads ``PGPASSFILE``), ``STANDIN_INSTANCE_ID``
(a secret, hence never on the command line), ``STANDIN_DOCUMENTS_DIR``, ``STANDIN_PORT``
(0 picks a free port), ``STANDIN_PORT_FILE`` (receives the bound port once connections
are accepted) and ``STANDIN_AUTH_FAILURE_DELAY`` (seconds, default 1). SIGTERM stops it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from checkpoint.files import write_private
from checkpoint.lab.standin.app import StandinServer

logger = logging.getLogger("checkpoint.lab.standin")


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"error: environment variable {name} is missing: set it before starting the stand-in")
    return value


def _number(name: str, default: str, kind):
    raw = os.environ.get(name, default)
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not a valid {kind.__name__}: set a number") from None


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    pgpassfile = os.environ.get("PGPASSFILE")
    server = StandinServer(
        _required("STANDIN_DB_URI"),
        _required("STANDIN_INSTANCE_ID"),
        Path(_required("STANDIN_DOCUMENTS_DIR")),
        port=_number("STANDIN_PORT", "0", int),
        auth_failure_delay=_number("STANDIN_AUTH_FAILURE_DELAY", "1.0", float),
        pgpassfile=Path(pgpassfile) if pgpassfile else None,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    server.start()
    port_file = os.environ.get("STANDIN_PORT_FILE")
    if port_file:
        write_private(Path(port_file), f"{server.port}\n".encode())

    stopping.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
