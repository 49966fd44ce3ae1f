"""How long a request may take to arrive: slow and stalled clients get 408, not a server's patience.

A request's clock starts at its first byte; its headers and its whole body
must be in within REQUEST_TIMEOUT_SECONDS. The body is read before any route
runs (`receive_body`), so a route never holds a request that is still
arriving, and a client trickling one byte a second cannot keep a connection
for longer than the deadline. An idle keep-alive connection is closed quietly
after KEEPALIVE_SECONDS: it owes us nothing.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from flask import request

from inferscale.metrics import ConnectionMetrics


class RequestTimeout(Exception):
    """The request's headers and body did not arrive within the deadline."""


class Arrivals:
    """One worker's rules for its connections, and the connections waiting between requests."""

    def __init__(self, idle_seconds: float, arrival_seconds: float, metrics: ConnectionMetrics):
        self.idle_seconds = idle_seconds
        self.arrival_seconds = arrival_seconds
        self.metrics = metrics
        self.idle: set[ArrivalDeadline] = set()
        self.stopping = False

    def stop(self) -> None:
        """The worker is stopping: end idle keep-alive connections now, not a keep-alive later."""
        self.stopping = True
        for connection in list(self.idle):
            connection.hang_up()


class ArrivalDeadline:
    """A client socket that enforces each request's arrival deadline on its reads.

    Everything but reading is the wrapped socket's own (gunicorn writes the
    response through it unchanged).
    """

    def __init__(self, sock: socket.socket, arrivals: Arrivals):
        self._sock = sock
        self._arrivals = arrivals
        self._deadline: float | None = None
        self._refusing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recv(self, size: int) -> bytes:
        if self._refusing:
            return b""
        if self._deadline is None:
            return self._first_bytes(size)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._timed_out()
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(size)
        except TimeoutError:
            self._timed_out()
        finally:
            self._sock.settimeout(None)

    def sendall(self, data: bytes) -> None:
        if self._refusing and data.startswith(b"HTTP/1.1 "):
            # gunicorn drops an application's Connection header, but this
            # connection closes after this answer: say so (RFC 9112, 9.6).
            data = data.replace(b"\r\nConnection: keep-alive\r\n", b"\r\nConnection: close\r\n", 1)
        self._sock.sendall(data)

    def request_received(self) -> None:
        """The whole request is in: stop its clock."""
        if self._deadline is not None:
            self._deadline = None
            self._arrivals.metrics.receiving.dec()

    def refuse_rest(self) -> None:
        """Read nothing more: what is left of this request is discarded with the connection."""
        self.request_received()
        self._refusing = True

    def hang_up(self) -> None:
        """Wake a read waiting for the next request with end-of-stream."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RD)

    def close(self) -> None:
        self.request_received()
        self._sock.close()

    def _first_bytes(self, size: int) -> bytes:
        if self._arrivals.stopping:
            return b""
        self._arrivals.idle.add(self)
        self._sock.settimeout(self._arrivals.idle_seconds)
        try:
            data = self._sock.recv(size)
        except OSError:
            # Idle too long (a timeout), or hung up by `Arrivals.stop` (gevent
            # wakes the read with an error): end the connection without a word.
            return b""
        finally:
            self._sock.settimeout(None)
            self._arrivals.idle.discard(self)
        if data:
            self._deadline = time.monotonic() + self._arrivals.arrival_seconds
            self._arrivals.metrics.receiving.inc()
        return data

    def _timed_out(self):
        self.refuse_rest()
        self._arrivals.metrics.timeouts.inc()
        raise RequestTimeout(
            f"the request did not arrive within {self._arrivals.arrival_seconds:g} s"
        ) from None


def receive_body() -> None:
    """Flask before_request hook: read the whole body now, under the arrival deadline."""
    request.get_data()
    connection = request.environ.get("gunicorn.socket")
    if isinstance(connection, ArrivalDeadline):
        connection.request_received()


def refuse_rest_of_request() -> None:
    """After an answer that leaves part of the request unread (408, 413): close, don't drain."""
    connection = request.environ.get("gunicorn.socket")
    if isinstance(connection, ArrivalDeadline):
        connection.refuse_rest()
