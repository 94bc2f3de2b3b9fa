"""The stand-in API server: plain HTTP on loopback, routing, watches, exec upgrades, and the kubeconfig.

The root cluster is served at ``url``. Each cluster added with ``add_cluster(name)`` is served at
``url + "/clusters/" + name``, so that two kubeconfig contexts can point at separate clusters.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from checkpoint.files import write_private
from tests.support.kube_api import openapi, resources
from tests.support.kube_api.cluster import Cluster, ExecCall, Timing
from tests.support.kube_api.controllers import ControllerLoop
from tests.support.kube_api.exec_stream import ExecSession
from tests.support.kube_api.resources import ApiError, bad_request, unknown_path
from tests.support.kube_api.routes import Reply, Routes, Target, parse_target
from tests.support.kube_api.label_selectors import field_matcher, label_matcher

logger = logging.getLogger(__name__)

ROOT_CLUSTER = "default"
CLUSTER_PATH_PREFIX = "clusters"
MAX_BODY_BYTES = 10_000_000
DEFAULT_WATCH_SECONDS = 300


class KubeApiServer:
    """A stand-in Kubernetes API server for tests: ``start()``, ``url``, ``stop()``, ``write_kubeconfig()``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, timing: Timing | None = None):
        self.host = host
        self.port = port
        self.timing = timing or Timing()
        self.clusters: dict[str, Cluster] = {}
        self._loops: list[ControllerLoop] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.cluster = self.add_cluster(ROOT_CLUSTER)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cluster_url(self, name: str) -> str:
        return self.url if name == ROOT_CLUSTER else f"{self.url}/{CLUSTER_PATH_PREFIX}/{name}"

    def add_cluster(self, name: str) -> Cluster:
        """Add a separate cluster, served under its own path prefix, with its own controllers."""
        if name in self.clusters:
            raise ValueError(f"cluster {name!r} exists already: pick another name")
        cluster = Cluster(name, self.timing)
        self.clusters[name] = cluster
        loop = ControllerLoop(cluster)
        self._loops.append(loop)
        if self._httpd is not None:
            loop.start()
        return cluster

    def start(self) -> None:
        """Bind, then serve in a background thread. Connections are accepted once this returns."""
        handler = type("KubeApiHandler", (KubeApiRequestHandler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kube-standin-http", daemon=True)
        self._thread.start()
        for loop in self._loops:
            loop.start()
        logger.info("Kubernetes API stand-in listening on %s", self.url)

    def stop(self) -> None:
        if self._httpd is None:
            return
        for loop in self._loops:
            loop.stop()
        for cluster in self.clusters.values():
            cluster.store.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = None
        logger.info("Kubernetes API stand-in on %s stopped", self.url)

    def write_kubeconfig(self, path: Path, context_names: Iterable[str], *,
                         clusters: Mapping[str, str] | None = None,
                         namespaces: Mapping[str, str] | None = None) -> Path:
        """Write a kubeconfig (mode 600) with one context per name, the first being the current context.

        A context uses the cluster that ``clusters`` maps it to, else the cluster of the same name
        if one was added, else the root cluster. ``namespaces`` sets a context's default namespace.
        """
        names = list(context_names)
        if not names:
            raise ValueError("no context names given: pass at least one, such as ['sandbox']")
        config = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [], "contexts": [],
                  "users": [{"name": "standin", "user": {}}], "current-context": names[0]}
        for context in names:
            cluster = (clusters or {}).get(context) or (context if context in self.clusters else ROOT_CLUSTER)
            if cluster not in self.clusters:
                raise ValueError(f"context {context!r} maps to unknown cluster {cluster!r}: add it with add_cluster")
            config["clusters"].append({"name": context, "cluster": {"server": self.cluster_url(cluster)}})
            entry = {"cluster": context, "user": "standin"}
            if namespaces and context in namespaces:
                entry["namespace"] = namespaces[context]
            config["contexts"].append({"name": context, "context": entry})
        write_private(Path(path), json.dumps(config, indent=2).encode())
        return Path(path)


class KubeApiRequestHandler(BaseHTTPRequestHandler):
    server_state: KubeApiServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # -- dispatch ------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        segments = [part for part in url.path.split("/") if part]
        cluster, segments = self._select_cluster(segments)
        try:
            body = self._read_body()
            if cluster is None:
                raise unknown_path()
            reply = self._route(cluster, segments, query, body)
        except ApiError as error:
            reply = Reply(error.code, error.status())
        except Exception:
            logger.exception("%s %s failed", self.command, self.path)
            reply = Reply(500, ApiError(500, "InternalError", "internal error in the stand-in").status())
        if reply is not None:
            self._send(reply)

    def _select_cluster(self, segments: list[str]) -> tuple[Cluster | None, list[str]]:
        clusters = self.server_state.clusters
        if segments[:1] == [CLUSTER_PATH_PREFIX] and len(segments) >= 2:
            return clusters.get(segments[1]), segments[2:]
        return clusters[ROOT_CLUSTER], segments

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        return self.rfile.read(length) if length else b""

    def _route(self, cluster: Cluster, segments: list[str], query: dict, body: bytes) -> Reply | None:
        discovery = self._discovery(segments)
        if discovery is not None:
            return discovery
        target = parse_target(segments)
        if target is None:
            raise unknown_path()
        routes = Routes(cluster.store)
        if target.subresource == "exec":
            return self._exec(cluster, target)
        if target.subresource == "scale":
            return self._scale(routes, target, body)
        if target.subresource == "status":
            raise ApiError(405, "MethodNotAllowed", "the status subresource is written by the stand-in's controllers")
        if target.name is None:
            return self._collection(routes, target, query, body)
        return self._item(routes, target, body)

    def _collection(self, routes: Routes, target: Target, query: dict, body: bytes) -> Reply | None:
        if self.command == "GET" and query.get("watch") in ("1", "true"):
            self._watch(routes, target, query)
            return None
        if self.command == "GET":
            return routes.list(target, query)
        if self.command == "POST":
            return routes.create(target, body)
        raise resources.method_not_allowed(self.command)

    def _item(self, routes: Routes, target: Target, body: bytes) -> Reply:
        if self.command == "GET":
            return routes.get(target)
        if self.command == "PUT":
            return routes.update(target, body)
        if self.command == "PATCH":
            return routes.patch(target, body, self.headers.get("Content-Type", ""))
        if self.command == "DELETE":
            return routes.delete(target)
        raise resources.method_not_allowed(self.command)

    def _scale(self, routes: Routes, target: Target, body: bytes) -> Reply:
        if self.command == "GET":
            return routes.get_scale(target)
        if self.command == "PUT":
            return routes.update_scale(target, body, None)
        if self.command == "PATCH":
            return routes.update_scale(target, body, self.headers.get("Content-Type", ""))
        raise resources.method_not_allowed(self.command)

    # -- discovery -----------------------------------------------------------------

    def _discovery(self, segments: list[str]) -> Reply | None:
        aggregated = resources.AGGREGATED_DISCOVERY_TYPE.split(";as=")[0] in self.headers.get("Accept", "")
        if segments == ["version"]:
            return Reply(200, resources.SERVER_VERSION)
        if segments[:2] == ["openapi", "v3"]:
            return self._openapi(segments[2:])
        if segments in (["api"], ["apis"]) and aggregated:
            return Reply(200, resources.aggregated_discovery(core=segments == ["api"]),
                         content_type=resources.AGGREGATED_DISCOVERY_TYPE)
        if segments == ["api"]:
            return Reply(200, resources.core_versions())
        if segments == ["apis"]:
            return Reply(200, resources.group_list())
        if segments == ["api", "v1"] or (len(segments) == 3 and segments[0] == "apis"):
            group, version = ("", "v1") if segments[0] == "api" else (segments[1], segments[2])
            listing = resources.resource_list(group, version)
            if listing is None:
                raise unknown_path()
            return Reply(200, listing)
        return None

    def _openapi(self, segments: list[str]) -> Reply:
        if not segments:
            return Reply(200, openapi.root_document())
        if segments[:1] == ["api"] and len(segments) == 2:
            document = openapi.group_version_document("", segments[1])
        elif segments[:1] == ["apis"] and len(segments) == 3:
            document = openapi.group_version_document(segments[1], segments[2])
        else:
            document = None
        if document is None:
            raise unknown_path()
        return Reply(200, document)

    # -- exec and watch ------------------------------------------------------------

    def _exec(self, cluster: Cluster, target: Target) -> Reply | None:
        query = parse_qs(urlsplit(self.path).query)
        pod = cluster.store.get("pods", target.namespace, target.name)
        containers = [container["name"] for container in pod["spec"]["containers"]]
        container = query.get("container", [containers[0]])[-1]
        command = query.get("command", [])
        if container not in containers:
            raise bad_request(f"container {container} is not valid for pod {target.name}")
        if not command:
            raise bad_request("you must specify at least 1 command")
        if pod["status"].get("phase") != "Running" or "deletionTimestamp" in pod["metadata"]:
            raise bad_request(f"unable to upgrade connection: pod {target.name} is not running")
        if self.headers.get("Upgrade", "").lower() != "websocket":
            # NOTE: SPDY, kubectl's fallback transport, is not implemented. kubectl 1.32 tries WebSocket first.
            raise ApiError(400, "BadRequest", "Upgrade request required: this stand-in serves exec over WebSocket only")
        streams = {name: query.get(name, ["false"])[-1] in ("1", "true") for name in ("stdin", "stdout", "stderr")}
        call = ExecCall(target.namespace, target.name, container, command)
        cluster.record_exec(call)
        profile = cluster.profile_for_pod(target.namespace, target.name)
        try:
            ExecSession(self, call, profile, streams).run()
        except OSError as error:
            logger.debug("exec %s/%s: connection failed: %s", target.namespace, target.name, error)
        return None

    def _watch(self, routes: Routes, target: Target, query: dict) -> None:
        store = routes.store
        plural = target.resource_type.plural
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"), plural)

        def matches(obj: dict) -> bool:
            in_namespace = not target.namespace or obj["metadata"].get("namespace") == target.namespace
            return in_namespace and labels(obj) and fields(obj)

        since = query.get("resourceVersion") or "0"
        if not since.isdigit():
            raise bad_request(f"invalid resourceVersion {since!r}")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        self._start_chunked()
        last = int(since)
        if last == 0:
            items, last = store.list(plural, target.namespace, matches)
            for item in items:
                self._write_chunk({"type": "ADDED", "object": item})
        # NOTE: objects leaving or entering the selector are not sent as DELETED or ADDED, unlike the real API.
        while time.monotonic() < deadline and not store.closed:
            for event in store.wait_for_events(plural, last, deadline):
                last = max(last, event.resource_version)
                if matches(event.object):
                    self._write_chunk({"type": event.type, "object": event.object})
        self._end_chunked()

    def _start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _write_chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    # -- replies -------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

