"""The HTTP worker: gunicorn's gevent worker, with an arrival deadline on every request.

gevent, not threads: a request waiting for a model slot, or a client sending
its request slowly, holds a greenlet, so there is no small pool of threads
for them to exhaust, and /metrics and the probes are answered however many
connections stall. Each listener (the main port, the admin port) has its own
pool of WORKER_CONNECTIONS, so a flood on one cannot starve the other.
"""

from __future__ import annotations

import contextlib
import json

import gevent
from gunicorn.workers.ggevent import GeventWorker
from prometheus_client import CollectorRegistry

from inferscale.arrival import ArrivalDeadline, Arrivals, RequestTimeout
from inferscale.metrics import ConnectionMetrics
from inferscale.supervisor import set_process_name


class InferenceWorker(GeventWorker):
    def init_process(self) -> None:
        set_process_name("http-worker")
        arrival_seconds = self.app.settings.request_timeout_seconds
        # After fork, so the gauge writes to this worker's own metric file.
        self.arrivals = Arrivals(
            idle_seconds=self.cfg.keepalive or arrival_seconds,
            arrival_seconds=arrival_seconds,
            metrics=ConnectionMetrics(CollectorRegistry()),
        )
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        super().handle(listener, ArrivalDeadline(client, self.arrivals), addr)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # Not from the signal handler itself: shutting sockets down wakes greenlets.
        gevent.spawn(self.arrivals.stop)

    def timeout_ctx(self):
        # gunicorn would otherwise bound the header read by the keep-alive time
        # and close silently; ArrivalDeadline times requests instead.
        return contextlib.nullcontext()

    def handle_error(self, req, client, addr, exc) -> None:
        if not isinstance(exc, RequestTimeout):
            super().handle_error(req, client, addr, exc)
            return
        # The headers themselves were too slow, so no route ever saw the request.
        self.log.info("408 to %s: %s", addr[0] if addr else "?", exc)
        body = json.dumps({"error": {"code": "request_timeout", "message": str(exc), "details": []}})
        with contextlib.suppress(OSError):
            client.sendall(
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body.encode())
            )
