"""``pods/exec`` over WebSocket with the ``v5.channel.k8s.io`` and ``v4.channel.k8s.io`` subprotocols.

Every binary message starts with a channel byte: 0 stdin (client to server), 1 stdout, 2 stderr,
3 the error channel, which carries one ``Status`` JSON when the command ends, and 4 terminal resize.
v5 adds a close signal, channel 255 followed by the channel being closed, which kubectl sends as
``[255, 0]`` when its stdin reaches end of file. The command runs locally, as described by the
pod's ExecProfile. The WebSocket framing is the ``websockets`` library's sans-I/O ServerProtocol,
driven over the socket that ``http.server`` accepted.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler

from websockets.exceptions import InvalidState
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tests.support.kube_api.cluster import ExecCall, ExecProfile

logger = logging.getLogger(__name__)
# The websockets library logs every frame at debug level, so a test lowers this level only when it needs them.
frame_logger = logging.getLogger(__name__ + ".frames")
frame_logger.setLevel(logging.INFO)

SUBPROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
OUTPUT_CHUNK_BYTES = 32 * 1024
CLIENT_CLOSE_TIMEOUT_SECONDS = 5


def success_status() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(command: list[str], exit_code: int) -> dict:
    """Return the Status the kubelet sends for a non-zero exit, which kubectl turns into its own exit code."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": (f"command terminated with non-zero exit code: error executing command "
                    f"[{' '.join(command)}], exit code {exit_code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def internal_error_status(message: str) -> dict:
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


def process_environment(pod: str, profile: ExecProfile) -> dict[str, str]:
    """Return a container-like environment: a few basics plus the profile's variables, not the test's own."""
    base = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOSTNAME": pod,
            "HOME": str(profile.cwd or "/"), "LANG": "C.UTF-8"}
    return {**base, **profile.env}


class ExecSession:
    """One exec request: the WebSocket handshake, the command, the stream pumps and the final Status."""

    def __init__(self, handler: BaseHTTPRequestHandler, call: ExecCall, profile: ExecProfile,
                 streams: dict[str, bool]):
        self.handler = handler
        self.call = call
        self.profile = profile
        self.streams = streams
        self.protocol = ServerProtocol(subprotocols=SUBPROTOCOLS, max_size=None, logger=frame_logger)
        self._lock = threading.Lock()
        self._closing = False
        self._output_done = threading.Event()
        self._client_gone = threading.Event()
        self._process: subprocess.Popen | None = None
        self._reader_started = False

    def run(self) -> None:
        self.handler.close_connection = True
        if not self._handshake():
            return
        try:
            if self.profile.on_exec:
                self.profile.on_exec(self.call)
        except Exception as error:
            logger.exception("exec %s/%s: the on_exec hook failed", self.call.namespace, self.call.pod)
            status = internal_error_status(f"on_exec hook failed: {error}")
        else:
            status = self._run_command()
        self._finish(status)

    # -- WebSocket plumbing --------------------------------------------------------

    def _handshake(self) -> bool:
        # http.server consumed the request already, so the protocol is fed its bytes rebuilt.
        header_lines = "".join(f"{name}: {value}\r\n" for name, value in self.handler.headers.items())
        self.protocol.receive_data(f"GET {self.handler.path} HTTP/1.1\r\n{header_lines}\r\n".encode("latin-1"))
        request = next(event for event in self.protocol.events_received() if isinstance(event, Request))
        response = self.protocol.accept(request)
        with self._lock:
            self.protocol.send_response(response)
            self._flush()
        if response.status_code != 101:
            logger.debug("exec %s/%s: WebSocket handshake rejected with %d", self.call.namespace, self.call.pod,
                         response.status_code)
            return False
        logger.debug("exec %s/%s: subprotocol %s, command %s", self.call.namespace, self.call.pod,
                     self.protocol.subprotocol, self.call.command)
        return True

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.handler.connection.sendall(data)

    def _send(self, channel: int, payload: bytes) -> bool:
        """Send one message on ``channel``, or return False when the session is closing or gone.

        A kubectl client killed mid-stream closes the socket under a running pump, which
        then gets a broken pipe or a closed protocol, and that ends the stream.
        """
        with self._lock:
            if self._closing:
                return False
            try:
                self.protocol.send_binary(bytes([channel]) + payload)
                self._flush()
            except (OSError, InvalidState) as error:
                logger.debug("exec stream closed while sending on channel %d: %s", channel, error)
                self._closing = True
                return False
            return True

    def _read_messages(self) -> None:
        """Feed incoming frames to the process's stdin until the client closes or disconnects."""
        fragments: list[bytes] = []
        try:
            while True:
                data = self.handler.rfile.read1(65536)
                with self._lock:
                    if data:
                        self.protocol.receive_data(data)
                    else:
                        self.protocol.receive_eof()
                    frames = self.protocol.events_received()
                    self._flush()
                for frame in frames:
                    if frame.opcode == Opcode.CLOSE:
                        return
                    if frame.opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                        fragments.append(frame.data)
                        if frame.fin:
                            self._on_message(b"".join(fragments))
                            fragments = []
                if not data:
                    return
        except OSError as error:
            logger.debug("exec %s/%s: connection ended: %s", self.call.namespace, self.call.pod, error)
        finally:
            self._client_gone.set()
            self._close_stdin()

    def _on_message(self, message: bytes) -> None:
        if not message:
            return
        channel, payload = message[0], message[1:]
        if channel == STDIN:
            self._write_stdin(payload)
        elif channel == CLOSE_SIGNAL and payload[:1] == bytes([STDIN]):
            self._close_stdin()

    def _write_stdin(self, payload: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.closed:
            return
        try:
            process.stdin.write(payload)
            process.stdin.flush()
        except (BrokenPipeError, ValueError):
            # The command exited or closed its stdin, so the rest of the input is discarded, as in a container.
            self._close_stdin()

    def _close_stdin(self) -> None:
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass

    # -- the command ---------------------------------------------------------------

    def _run_command(self) -> dict:
        if self.profile.fail_exec:
            return internal_error_status("error executing command in container: exec failed (fault injected)")
        try:
            self._process = subprocess.Popen(
                self.call.command,
                stdin=subprocess.PIPE if self.streams["stdin"] else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=process_environment(self.call.pod, self.profile),
                cwd=self.profile.cwd or "/",
                start_new_session=True,
            )
        except OSError as error:
            return internal_error_status(
                f"error executing command in container: failed to exec in container: {error.strerror}: "
                f"{self.call.command[0]}")

        self._start_reader()
        pumps = [threading.Thread(target=self._pump, args=(self._process.stdout, STDOUT), daemon=True),
                 threading.Thread(target=self._pump, args=(self._process.stderr, STDERR), daemon=True)]
        for pump in pumps:
            pump.start()
        threading.Thread(target=self._join_pumps, args=(pumps,), daemon=True).start()
        self._output_done.wait()
        return self._exit_status()

    def _start_reader(self) -> None:
        self._reader_started = True
        threading.Thread(target=self._read_messages, name="exec-stdin", daemon=True).start()

    def _join_pumps(self, pumps: list[threading.Thread]) -> None:
        for pump in pumps:
            pump.join()
        self._output_done.set()

    def _pump(self, pipe, channel: int) -> None:
        wanted = self.streams["stdout" if channel == STDOUT else "stderr"]
        limit = self.profile.truncate_stdout_after_bytes if channel == STDOUT else None
        while chunk := pipe.read1(OUTPUT_CHUNK_BYTES):
            if limit is not None and self.call.stdout_bytes + len(chunk) >= limit:
                chunk = chunk[:limit - self.call.stdout_bytes]
                self._forward(channel, chunk, wanted)
                self.call.truncated = True
                self._output_done.set()
                return
            if not self._forward(channel, chunk, wanted):
                return

    def _forward(self, channel: int, chunk: bytes, wanted: bool) -> bool:
        if channel == STDOUT:
            self.call.stdout_bytes += len(chunk)
        else:
            self.call.stderr_bytes += len(chunk)
        if not wanted or not chunk:
            return True
        return self._send(channel, chunk)

    def _exit_status(self) -> dict:
        process = self._process
        if self.call.truncated:
            # The fault: output ends early, yet the stream reports success.
            _kill_group(process)
            process.wait()
            self.call.exit_code = 0
            return success_status()
        exit_code = process.wait()
        if exit_code < 0:
            exit_code = 128 - exit_code
        self.call.exit_code = exit_code
        return success_status() if exit_code == 0 else exit_code_status(self.call.command, exit_code)

    def _finish(self, status: dict) -> None:
        if not self._reader_started:
            self._start_reader()
        self._send(ERROR, json.dumps(status).encode())
        with self._lock:
            self._closing = True
            self.protocol.send_close(1000)
            self._flush()
        self._client_gone.wait(CLIENT_CLOSE_TIMEOUT_SECONDS)
        if self._process is not None and self._process.poll() is None:
            _kill_group(self._process)
        logger.debug("exec %s/%s ended: exit code %s, %d stdout bytes, %d stderr bytes",
                     self.call.namespace, self.call.pod, self.call.exit_code, self.call.stdout_bytes,
                     self.call.stderr_bytes)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
