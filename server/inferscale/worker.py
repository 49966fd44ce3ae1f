"""The HTTP worker: gunicorn's gevent worker, with an arrival deadline on every request.

gevent, not threads: a request waiting for a model slot, or a client sending
its request slowly, holds a greenlet, so there is no small pool of threads
for them to exhaust. Both gunicorn instances of the pod (the main port's and
the admin port's) run it.
"""

from __future__ import annotations

import contextlib
import json
import math
from http import HTTPStatus
from typing import Any

import gevent
from gunicorn.http.errors import ParseException
from gunicorn.workers.ggevent import GeventWorker
from prometheus_client import CollectorRegistry

from inferscale.api.errors import error_body
from inferscale.arrival import Arrivals, ClientConnection, RequestTimeout
from inferscale.metrics import ConnectionMetrics
from inferscale.runtime import runtime_of
from inferscale.supervisor import set_process_name, yield_to_probes

# How soon idle keep-alive connections are hung up once the pod drains or the worker is due for recycling.
DRAIN_CHECK_SECONDS = 0.1


class InferenceWorker(GeventWorker):
    def init_process(self) -> None:
        set_process_name(self.cfg.proc_name)
        serves_traffic = self.cfg.proc_name == "http-worker"
        if serves_traffic:
            yield_to_probes()
        # Prometheus and the kubelet reach each pod directly: the admin port
        # keeps its connections, however old and through the drain.
        self.serves_traffic = serves_traffic
        self.max_connection_age = self.app.settings.max_connection_age_seconds if serves_traffic else 0
        if serves_traffic:
            # A worker that leaves while its pod stays (recycled after
            # MAX_REQUESTS, or replaced on SIGHUP) stops accepting, then kills
            # the handlers still running after graceful_timeout: its admitted
            # requests, queued in the model process behind others', get the
            # time a pod's drain gives them. Set here, in the worker only: the
            # master's own deadline for a pod stop (after the drain) stays short.
            drain_seconds = math.ceil(self.app.settings.graceful_shutdown_seconds)
            self.cfg.set("graceful_timeout", max(self.cfg.graceful_timeout, drain_seconds))
        arrival_seconds = self.app.settings.request_timeout_seconds
        # After fork, so the gauge writes to this worker's own metric file.
        self.arrivals = Arrivals(
            idle_seconds=self.cfg.keepalive or arrival_seconds,
            arrival_seconds=arrival_seconds,
            metrics=ConnectionMetrics(CollectorRegistry()),
        )
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        super().handle(listener, ClientConnection(client, self.arrivals), addr)

    def run(self) -> None:
        if self.serves_traffic:
            gevent.spawn(self._close_kept_alive_once_leaving)
        super().run()

    def handle_request(self, listener_name, req, sock, addr) -> None:
        # Behind kube-proxy a connection stays with the pod it first reached:
        # a keep-alive client must reconnect now and then for the pods the HPA
        # adds to get its load. Marked before the response is made, so the
        # response itself says `Connection: close` and the client does not send
        # its next request into a closing socket.
        if self.max_connection_age and sock.age() >= self.max_connection_age:
            req.must_close = True
        try:
            super().handle_request(listener_name, req, sock, addr)
        finally:
            # A pipelined next request is parsed from bytes already read, so no
            # read comes to send a bodiless answer's held head before it runs.
            with contextlib.suppress(OSError):
                sock.send_held()
        # Kept alive as far as gunicorn knows (it raises StopIteration to close).
        try:
            if not sock.read_rest(req.body):
                req.must_close = True
        except (RequestTimeout, ParseException, OSError):
            # Answered already: no 408 or 400 can follow. Where the next request
            # would start is unknown, so the connection ends.
            req.must_close = True

    def _close_kept_alive_once_leaving(self) -> None:
        """Hang up keep-alive clients waiting for their next request once their
        next request should go elsewhere: SIGTERM drains the model process first,
        while this worker still runs, and its 503 would meet clients whose pod has
        left the Service; a worker due for recycling (MAX_REQUESTS, whose count
        gunicorn takes as a request starts) has stopped accepting and would admit
        them, only to wait for their answers before its successor starts. New
        connections it accepts in its last second are still answered. A model
        process that answers again, not draining, after a drain had the drain
        to itself (a SIGTERM to it, not to the pod) and was replaced:
        connections are kept alive again. (Between a pod's drained model
        process ending and this worker's stop, none answers.)"""
        backend = runtime_of(self.wsgi).backend
        while self.alive:
            status = backend.status()
            if status.draining and not self.arrivals.draining:
                self.arrivals.close_kept_alive()
            elif status.reachable and not status.draining:
                self.arrivals.resume_keep_alive()
            gevent.sleep(DRAIN_CHECK_SECONDS)
        self.arrivals.close_kept_alive()

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # Not from the signal handler itself: shutting sockets down wakes greenlets.
        gevent.spawn(self.arrivals.stop)

    def timeout_ctx(self):
        # gunicorn would otherwise bound the header read by the keep-alive time
        # and close silently; ClientConnection times requests instead.
        return contextlib.nullcontext()

    def handle_error(self, req, client, addr, exc) -> None:
        if isinstance(exc, RequestTimeout):
            # The headers themselves were too slow, so no route ever saw the request.
            self.log.info("408 to %s: %s", addr[0] if addr else "?", exc)
            with contextlib.suppress(OSError):
                send_json_error(client, 408, "request_timeout", str(exc))
            return
        # gunicorn's own refusals (a malformed request line, headers or chunk;
        # too long a line; a coding it does not take): its status, logs and
        # access line, with a JSON body instead of its HTML page.
        message = str(exc) if isinstance(exc, ParseException) else "internal server error"
        super().handle_error(req, _JsonErrorPage(client, message), addr, exc)


def send_json_error(client: ClientConnection, status: int, code: str, message: str) -> None:
    # No route has seen the request: the error's shape follows its path, if that arrived.
    body = json.dumps(error_body(client.request_path(), code, message)).encode()
    phrase = HTTPStatus(status).phrase.encode()
    client.sendall(
        b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status, phrase, len(body), body)
    )


class _JsonErrorPage:
    """The client's socket while gunicorn writes an error page: the page's status, with `message` as JSON."""

    def __init__(self, client: ClientConnection, message: str):
        self._client = client
        self._message = message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def sendall(self, page: bytes) -> None:
        status = HTTPStatus(int(page.split(b" ", 2)[1]))
        send_json_error(self._client, status, status.name.lower(), self._message)
