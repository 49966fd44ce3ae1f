"""A kube-proxy substitute: one HTTP reverse proxy per Service, on a loopback address.

Why it exists: pods live on 127.0.1.N (see node_agent.py), which Endpoints
and EndpointSlices refuse, so kube-proxy has nothing to program, and this
machine has no network namespaces or iptables rules we could set up (and
leak) anyway. The node agent feeds this proxy the pods it already polls from
the API, so routing follows the API's view: a pod receives traffic only while
its Ready condition is True and it is not being deleted (at most one poll,
0.5 s, stale).

Why per request: kube-proxy balances per *connection*. A load generator that
keeps its connections alive (locust does) stays pinned to the pods that
existed when it connected, so pods the HPA adds get no load and the autoscaling
loop looks broken when it is not. Routing each request to the Ready pod with
the fewest requests in flight through this proxy (ties taken in turn) spreads
load the way a service mesh or an L7 load balancer in front of the Service does.

Retries: a request is retried once, on another pod, only when connecting to
the chosen pod failed, i.e. before any byte of it was sent. Once the pod
accepted the request, its answer or failure (502) is the caller's.

Limits: HTTP/1.1 only (no Upgrade/WebSocket); request and response bodies
are buffered, not streamed (this API's bodies are small JSON); only pods on
the agent's own node are routed to (a one-node cluster: all of them).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection, never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
# A model request may wait in a pod's queue behind several 10 s inferences;
# callers have their own timeouts, this only bounds a pod that never answers.
UPSTREAM_TIMEOUT = 300.0
# Idle client keep-alive connections are closed after this long.
CLIENT_IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Backend:
    pod: str
    uid: str
    ip: str
    port: int


@dataclass(frozen=True)
class ProxySpec:
    """`namespace/name[:port]=host:port`: which Service, which of its ports, where to listen."""

    namespace: str
    name: str
    listen_host: str
    listen_port: int
    service_port: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ProxySpec":
        try:
            service, address = text.split("=", 1)
            namespace, name = service.split("/", 1)
            name, _, service_port = name.partition(":")
            host, port = address.rsplit(":", 1)
            return cls(namespace, name, host, int(port), service_port or None)
        except ValueError:
            raise ValueError(f"--proxy wants NAMESPACE/SERVICE[:PORT]=HOST:PORT, not {text!r}") from None


def _is_ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _matches(selector: dict, pod: dict) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


def _container_port(pod: dict, target) -> int | None:
    """targetPort as a number, or a named container port resolved in this pod."""
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"].get("containers", []):
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == "TCP":
                return int(port["containerPort"])
    return None


def backends_for(service: dict, pods: list[dict], service_port: str | None = None) -> list[Backend]:
    """Ready, non-terminating pods selected by `service`, with the target port each one serves."""
    selector = service.get("spec", {}).get("selector")
    ports = service.get("spec", {}).get("ports") or []
    if not selector or not ports:
        return []
    chosen = ports[0]
    if service_port is not None:
        chosen = next((p for p in ports if service_port in (p.get("name"), str(p.get("port")))), None)
        if chosen is None:
            return []
    target = chosen.get("targetPort", chosen["port"])
    backends = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status", {})
        if (meta.get("namespace") != service["metadata"]["namespace"] or meta.get("deletionTimestamp")
                or not status.get("podIP") or not _is_ready(pod) or not _matches(selector, pod)):
            continue
        port = _container_port(pod, target)
        if port is not None:
            backends.append(Backend(meta["name"], meta["uid"], status["podIP"], port))
    return sorted(backends, key=lambda b: b.pod)


class _Balancer:
    """Fewest requests in flight; among equals, the next one after the last chosen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backends: list[Backend] = []
        self._in_flight: dict[str, int] = {}
        self._last = ""

    def set(self, backends: list[Backend]) -> None:
        with self._lock:
            self._backends = backends

    def snapshot(self) -> list[Backend]:
        with self._lock:
            return list(self._backends)

    def acquire(self, exclude=()) -> Backend | None:
        with self._lock:
            candidates = [b for b in self._backends if b.uid not in exclude]
            if not candidates:
                return None
            fewest = min(self._in_flight.get(b.uid, 0) for b in candidates)
            tied = [b for b in candidates if self._in_flight.get(b.uid, 0) == fewest]
            choice = next((b for b in tied if b.pod > self._last), tied[0])
            self._last = choice.pod
            self._in_flight[choice.uid] = self._in_flight.get(choice.uid, 0) + 1
            return choice

    def release(self, backend: Backend) -> None:
        with self._lock:
            left = self._in_flight.get(backend.uid, 1) - 1
            if left:
                self._in_flight[backend.uid] = left
            else:
                self._in_flight.pop(backend.uid, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Many callers connect at once when a load step starts; 5 (the default) drops SYNs.
    request_queue_size = 128

    def __init__(self, address, proxy: "ServiceProxy"):
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_IDLE_TIMEOUT
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self):
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers are dropped, as a buffering proxy may
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _request_headers(self, body: bytes) -> dict[str, str]:
        named_in_connection = {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
        headers = {
            key: value for key, value in self.headers.items()
            if key.lower() not in HOP_BY_HOP | named_in_connection | {"content-length"}
        }
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        return headers

    def _forward(self) -> None:
        body = self._read_body()
        headers = self._request_headers(body)
        proxy = self.server.proxy
        tried: set[str] = set()
        for _ in range(2):
            backend = proxy.balancer.acquire(exclude=tried)
            if backend is None:
                break
            try:
                outcome = self._exchange(backend, body, headers)
            finally:
                proxy.balancer.release(backend)
            if outcome is not None:
                self._reply(*outcome)
                return
            tried.add(backend.uid)
        self._send_error(503, f"no ready pod behind service {proxy.spec.namespace}/{proxy.spec.name}", retry=True)

    def _exchange(self, backend: Backend, body: bytes, headers: dict):
        """(status, reason, headers, body) from the pod, None if it could not be reached
        (nothing was sent, so another pod may be tried)."""
        connection = http.client.HTTPConnection(backend.ip, backend.port, timeout=UPSTREAM_TIMEOUT)
        try:
            try:
                connection.connect()
            except OSError as error:
                log.info("connecting to %s (%s:%s) failed: %s", backend.pod, backend.ip, backend.port, error)
                return None
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException) as error:
                log.warning("%s %s to %s failed after sending: %s", self.command, self.path, backend.pod, error)
                return 502, "Bad Gateway", [("Content-Type", "application/json")], json.dumps(
                    {"error": f"pod {backend.pod} failed: {error}"}).encode()
        finally:
            connection.close()

    def _reply(self, status: int, reason: str, headers, body: bytes) -> None:
        try:
            self.send_response(status, reason)
            for key, value in headers:
                lowered = key.lower()
                if lowered in HOP_BY_HOP or (lowered == "content-length" and self.command != "HEAD"):
                    continue
                self.send_header(key, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the caller gave up; nothing to tell it

    def _send_error(self, status: int, message: str, retry: bool = False) -> None:
        headers = [("Content-Type", "application/json")]
        if retry:
            headers.append(("Retry-After", "1"))
        self._reply(status, http.client.responses[status], headers, json.dumps({"error": message}).encode())


class ServiceProxy:
    """Listens on `spec.listen_host:listen_port`; `refresh(service, pods)` sets where requests go."""

    def __init__(self, spec: ProxySpec):
        self.spec = spec
        self.balancer = _Balancer()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.spec.listen_host}:{self.spec.listen_port}"

    @property
    def backends(self) -> list[Backend]:
        return self.balancer.snapshot()

    def refresh(self, service: dict | None, pods: list[dict]) -> None:
        backends = backends_for(service, pods, self.spec.service_port) if service else []
        if backends != self.balancer.snapshot():
            log.info("%s/%s -> %s", self.spec.namespace, self.spec.name,
                     ", ".join(f"{b.pod}@{b.ip}:{b.port}" for b in backends) or "no ready pod")
        self.balancer.set(backends)

    def start(self) -> "ServiceProxy":
        self._server = _Server((self.spec.listen_host, self.spec.listen_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"proxy-{self.spec.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join()
        self._server = None
