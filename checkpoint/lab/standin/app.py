"""The stand-in's HTTP server: routing between the web UI and the REST API, and logging."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from checkpoint.lab.standin.api import API_PREFIX, ApiApp
from checkpoint.lab.standin.protocol import Request, Response
from checkpoint.lab.standin.store import Store, StoreUnavailable
from checkpoint.lab.standin.web import WebApp

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
SECRET_PARAMETERS = {"token", "dolapikey", "api_key", "password", "pass", "newtoken"}
UNAVAILABLE = "Dolibarr is not available: {reason}. Seed the sandbox database, then retry."


def redact_query(raw_path: str) -> str:
    """Return ``raw_path`` with the values of secret query parameters replaced by ``***``."""
    path, separator, query = raw_path.partition("?")
    if not separator:
        return path
    pairs = [(name, "***" if name.lower() in SECRET_PARAMETERS else value)
             for name, value in parse_qsl(query, keep_blank_values=True)]
    return path + "?" + urlencode(pairs, safe="*/")


class StandinServer:
    """A Dolibarr 20.0.2 stand-in serving the database at ``db_uri`` on ``host``:``port``."""

    def __init__(self, db_uri: str, instance_id: str, documents_dir: Path, *, host: str = "127.0.0.1",
                 port: int = 0, auth_failure_delay: float = 1.0, pgpassfile: Path | None = None):
        if not instance_id:
            raise ValueError("instance unique id is empty: pass the value of $dolibarr_main_instance_unique_id")
        store = Store(db_uri, pgpassfile)
        self.web = WebApp(store, instance_id, Path(documents_dir), auth_failure_delay)
        self.api = ApiApp(store, instance_id, auth_failure_delay)
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind, then serve in a background thread; connections are accepted once this returns."""
        handler = type("StandinHandler", (StandinRequestHandler,), {"standin": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="standin-http", daemon=True)
        self._thread.start()
        logger.info("Dolibarr stand-in listening on %s", self.url)

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = None
        logger.info("Dolibarr stand-in on %s stopped", self.url)

    def serve(self, request: Request) -> Response:
        try:
            if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
                return self.api.handle(request)
            return self.web.handle(request)
        except StoreUnavailable as error:
            logger.warning("responding 503 to %s: %s", request.path, error)
            return Response.text(UNAVAILABLE.format(reason=error), 503)


class StandinRequestHandler(BaseHTTPRequestHandler):
    standin: StandinServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool = True) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(Response.text("Request body too large", 413), send_body)
            return
        body = self.rfile.read(length) if length else b""
        request = Request.parse(self.command, self.path, self.headers, body, self.client_address[0])
        try:
            response = self.standin.serve(request)
        except Exception:
            logger.exception("request %s %s failed", self.command, redact_query(self.path))
            response = Response.text("Internal server error", 500)
        self._send(response, send_body)

    def _send(self, response: Response, send_body: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("Cache-Control", "no-store, no-cache, must-revalidate")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def log_request(self, code="-", size="-") -> None:
        logger.info("%s %s %s", self.command, redact_query(self.path), code)

    def log_message(self, format: str, *args) -> None:
        # http.server's own messages (bad requests, timeouts) may quote the request line, so redact it.
        logger.info("http.server: %s", (format % args).replace(self.path or "", redact_query(self.path or "")))
