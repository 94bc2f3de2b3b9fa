"""status and relink-env against servers that are down, not Dolibarr, or silent.

Each case must end in one error line or a failed step naming the cause, a distinct
non-zero exit code, no traceback, and no key in the output.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from contextlib import contextmanager

import pytest

from checkpoint.lab.pgcluster import free_port
from tests.cli_helpers import assert_one_line_error, run_invoke

KEY = "Agent-Key-0123456789abcdef"


class NotDolibarrHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def serve_not_dolibarr():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotDolibarrHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_silence():
    """Accept connections and never send a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def agent_config(tmp_path, url):
    env_file = tmp_path / "agent.env"
    env_file.write_text(f"DOLIBARR_API_KEY={KEY}\n")
    env_file.chmod(0o600)
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    return {
        "sandbox": {"url": url, "http_timeout": 1},
        "agent": {"env_file": "agent.env", "key_file": "api-key"},
    }


def status_json(tmp_path, config):
    result = run_invoke(["status", "--json"], config, tmp_path)
    assert "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr
    return result, json.loads(result.stdout)


def test_status_sandbox_down(tmp_path):
    config = agent_config(tmp_path, f"http://127.0.0.1:{free_port()}")

    result, document = status_json(tmp_path, config)

    assert result.returncode == 10
    assert document["live"] is False
    assert document["armed"] is False
    assert document["reason"] == "sandbox_down"


def test_status_not_dolibarr(tmp_path):
    with serve_not_dolibarr() as url:
        result, document = status_json(tmp_path, agent_config(tmp_path, url))

    assert result.returncode == 12
    assert document["live"] is False
    assert document["reason"] == "not_dolibarr"
    assert "is this a Dolibarr server" in document["detail"]


def test_status_server_never_answers(tmp_path):
    with serve_silence() as url:
        result, document = status_json(tmp_path, agent_config(tmp_path, url))

    assert result.returncode == 11
    assert document["reason"] == "timeout"
    assert "within 1 s" in document["detail"]


def test_status_without_env_file(tmp_path):
    with serve_not_dolibarr() as url:
        config = agent_config(tmp_path, url)
        (tmp_path / "agent.env").unlink()
        result, document = status_json(tmp_path, config)

    assert result.returncode == 20
    assert document["reason"] == "no_env_file"


def test_status_env_file_without_key(tmp_path):
    with serve_not_dolibarr() as url:
        config = agent_config(tmp_path, url)
        (tmp_path / "agent.env").write_text("OTHER=1\n")
        result, document = status_json(tmp_path, config)

    assert result.returncode == 21
    assert document["reason"] == "no_key"


def test_status_human_output_names_reason(tmp_path):
    config = agent_config(tmp_path, f"http://127.0.0.1:{free_port()}")

    result = run_invoke(["status"], config, tmp_path)

    assert result.returncode == 10
    assert "NOT armed (sandbox_down)" in result.stdout
    assert "RECAP status:" in result.stdout


@pytest.mark.parametrize(
    "server, reason",
    [("down", "is the sandbox running"), ("silent", "within 1 s"), ("nginx", "is this a Dolibarr server")],
)
def test_relink_env_fails_on_bad_server(tmp_path, server, reason):
    contexts = {"silent": serve_silence, "nginx": serve_not_dolibarr}
    if server == "down":
        url = f"http://127.0.0.1:{free_port()}"
        result = run_invoke(["relink-env"], agent_config(tmp_path, url), tmp_path)
    else:
        with contexts[server]() as url:
            result = run_invoke(["relink-env"], agent_config(tmp_path, url), tmp_path)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed")]
    assert len(failed) == 1
    assert reason in failed[0]


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), ("", "is empty"), ("has spaces in it", "does not hold one API key")],
)
def test_relink_env_bad_key_file(tmp_path, content, message):
    config = agent_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    key_file = tmp_path / "api-key"
    if content is None:
        key_file.unlink()
    else:
        key_file.write_text(content)

    result = run_invoke(["relink-env"], config, tmp_path)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed")]
    assert len(failed) == 1
    assert message in failed[0]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"sandbox": {"url": "ftp://example"}}, "invalid checkpoint.sandbox.url 'ftp://example'"),
        ({"sandbox": {"url": "http://user:Pa55word-x@127.0.0.1"}}, "remove the credentials"),
        ({"agent": {"rights": ["bank"]}}, "invalid checkpoint.agent.rights"),
        ({"agent": {"login": "bad login"}}, "invalid checkpoint.agent.login 'bad login'"),
        ({"sandbox": {"http_timeout": 0}}, "invalid checkpoint.sandbox.http_timeout"),
        ({"sandbox": {"urll": "x"}}, "unknown setting checkpoint.sandbox.urll"),
        ({"sandbox": {"url": "http://[::1"}}, "invalid checkpoint.sandbox.url 'http://[::1'"),
        ({"sandbox": {"url": "http://127.0.0.1:99999"}}, "invalid checkpoint.sandbox.url"),
        ({"lifecycle": {"sandbox_db_uri": "postgresql://u@h/db?sslpassword=Pa55word-x"}}, "contains a password"),
        ({"lifecycle": {"prod_db_uri": "postgresql://u@h/db?p%61ssword=Pa55word-x"}}, "contains a password"),
        ({"lifecycle": {"sandbox_db_uri": "postgresql://u:Pa55word-x@h/db"}}, "contains a password"),
        ({"lifecycle": {"prod_db_uri": "postgresql://u@h/db?opt%69ons=-c%20x"}}, "it sets options"),
        ({"lifecycle": {"prod_db_uri": "postgresql://u@h/db?bogus=Pa55word-x"}}, 'invalid URI query parameter: "bogus"'),
    ],
)
def test_bad_settings_one_line(tmp_path, config, message):
    result = run_invoke(["status"], config, tmp_path)

    line = assert_one_line_error(result, message)
    assert result.returncode == 2
    assert "Pa55word-x" not in line


@pytest.mark.parametrize(
    "sandbox_url, prod_url",
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080", "http://localhost:8080"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/index.php"),
        ("http://0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("http://[::ffff:127.0.0.1]:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/./", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/%69ndex.php", "http://127.0.0.1:8080"),
        ("http://localhost.:8080", "http://127.0.0.1:8080"),
    ],
)
@pytest.mark.parametrize("task", ["refresh", "provision", "status"])
def test_sandbox_url_equal_to_prod_rejected(tmp_path, sandbox_url, prod_url, task):
    config = {"sandbox": {"url": sandbox_url, "prod_url": prod_url}}

    result = run_invoke([task], config, tmp_path)

    assert_one_line_error(result, "is prod's URL")
    assert result.returncode == 3


def test_sandbox_url_other_port_accepted(tmp_path):
    config = {"sandbox": {"url": "http://127.0.0.1:8080", "prod_url": "http://127.0.0.1:8081", "http_timeout": 1}}

    result = run_invoke(["status"], config, tmp_path)

    assert "is prod's URL" not in result.stderr


def test_status_env_url_not_sandbox(tmp_path):
    with serve_not_dolibarr() as url:
        config = agent_config(tmp_path, url)
        (tmp_path / "agent.env").write_text(f"DOLIBARR_API_KEY={KEY}\nDOLIBARR_URL=http://127.0.0.1:1\n")
        result, document = status_json(tmp_path, config)

    assert result.returncode == 25
    assert document["reason"] == "stale_env"
    assert "run invoke relink-env" in document["detail"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("checkpoint:\n  sandbox: https://x\n", "a section was given a single value"),
        ("checkpoint: [\n", "invalid configuration (ParserError"),
    ],
)
def test_broken_config_file_one_line(tmp_path, text, message):
    config_file = tmp_path / "broken.yaml"
    config_file.write_text(text)

    result = run_invoke(["-f", str(config_file), "status"], None, tmp_path)

    assert_one_line_error(result, message)
    assert result.returncode == 2


def test_missing_config_file_one_line(tmp_path):
    result = run_invoke(["-f", str(tmp_path / "absent.yaml"), "status"], None, tmp_path)

    assert_one_line_error(result, "absent.yaml not found")


@pytest.mark.parametrize(
    "variable, value",
    [("INVOKE_CHECKPOINT_SANDBOX_HTTP_TIMEOUT", "abc"), ("INVOKE_CHECKPOINT_AGENT_RIGHTS", "111")],
)
def test_uncastable_environment_one_line(tmp_path, variable, value):
    result = run_invoke(["status"], None, tmp_path, env={variable: value})

    assert_one_line_error(result, "invalid configuration")
    assert result.returncode == 2


def test_uncastable_environment_names_variable(tmp_path):
    result = run_invoke(["status"], None, tmp_path, env={"INVOKE_CHECKPOINT_CHECKPOINTS_KEEP": "abc"})

    assert_one_line_error(result, "INVOKE_CHECKPOINT_CHECKPOINTS_KEEP cannot be read")
    assert result.returncode == 2


@pytest.mark.parametrize("value", [True, 2.7, "2.7", 0])
def test_checkpoints_keep_not_whole_rejected(tmp_path, value):
    result = run_invoke(["status"], {"checkpoints": {"keep": value}}, tmp_path)

    assert_one_line_error(result, "invalid checkpoint.checkpoints.keep")
    assert result.returncode == 2


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_timeout_rejected(tmp_path, value):
    result = run_invoke(["status"], {"sandbox": {"url": "http://127.0.0.1:9", "http_timeout": value}}, tmp_path)

    assert_one_line_error(result, "invalid checkpoint.sandbox.http_timeout")


def test_status_reports_unfinished_documents_sync(tmp_path):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / ".sandbox-lifecycle-sync-incomplete").write_text("2026-12-04T20:00:00Z\n")
    config = agent_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    config["lifecycle"] = {"sandbox_documents_dir": str(documents)}

    _, document = status_json(tmp_path, config)

    assert len(document["leftovers"]) == 1
    assert "documents sync incomplete since 2026-12-04T20:00:00Z" in document["leftovers"][0]
