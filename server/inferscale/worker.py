"""The HTTP worker: gunicorn's gevent worker, with an arrival deadline on every request.

gevent, not threads: a request waiting for a model slot, or a client sending
its request slowly, holds a greenlet, so there is no small pool of threads
for them to exhaust. Both gunicorn instances of the pod (the main port's and
the admin port's) run it.
"""

from __future__ import annotations

import contextlib
import json

import gevent
from gunicorn.workers.ggevent import GeventWorker
from prometheus_client import CollectorRegistry

from inferscale.arrival import Arrivals, ClientConnection, RequestTimeout
from inferscale.metrics import ConnectionMetrics
from inferscale.supervisor import set_process_name, yield_to_probes


class InferenceWorker(GeventWorker):
    def init_process(self) -> None:
        set_process_name(self.cfg.proc_name)
        if self.cfg.proc_name == "http-worker":
            yield_to_probes()
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

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # Not from the signal handler itself: shutting sockets down wakes greenlets.
        gevent.spawn(self.arrivals.stop)

    def timeout_ctx(self):
        # gunicorn would otherwise bound the header read by the keep-alive time
        # and close silently; ClientConnection times requests instead.
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
