"""How long a request may take to arrive: slow and stalled clients get 408, not a server's patience.

A request's clock starts at its first byte; its headers and its body must be
in within REQUEST_TIMEOUT_SECONDS, however the bytes trickle in (a client
sending one byte a second is cut off at the deadline too). The routes read
the body before they hand anything to the model, so a slow body is refused
before it holds a slot. An idle keep-alive connection is closed quietly after
KEEPALIVE_SECONDS: it owes us nothing.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any, NoReturn

from flask import request
from gunicorn.util import split_request_uri, unquote_to_wsgi_str

from inferscale.metrics import ConnectionMetrics

# gunicorn's longest request line: a request's first bytes are kept until they
# hold its line or this many, so an answer the worker writes itself (a 408 to
# slow headers, a 431) can speak the route's error dialect.
REQUEST_LINE_BYTES = 8190
# A connection closed with its request partly unread (413, 408) first reads on
# for this long, or this much, discarding: closed at once with bytes unread,
# the kernel resets it, and a client still sending (http.client, urllib)
# loses the answer before reading it (RFC 9112, 9.6). Bounded, as a client
# may send for ever.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024


class RequestTimeout(Exception):
    """The request's headers and body did not arrive within the deadline."""


class Arrivals:
    """One worker's rules for its connections, and the connections waiting between requests."""

    def __init__(self, idle_seconds: float, arrival_seconds: float, metrics: ConnectionMetrics):
        self.idle_seconds = idle_seconds
        self.arrival_seconds = arrival_seconds
        self.metrics = metrics
        self.idle: set[ClientConnection] = set()
        self.stopping = False
        self.draining = False

    def stop(self) -> None:
        """The worker is stopping: end keep-alive connections waiting for their
        next request now, not a keep-alive later, and every connection after
        its answer. One whose first request has not come yet is answered: a
        worker accepts for up to a second after it was told to stop (its
        successors already run on a reload), and its client sent that request."""
        self.stopping = True
        self.close_kept_alive()

    def close_kept_alive(self) -> None:
        """The pod is draining: hang up connections waiting for their next
        request, so their clients reconnect, to a pod still in the Service; and
        end the others after the answer they wait for, which says so. One that
        has not sent its first request yet still gets an answer (503)."""
        self.draining = True
        for connection in list(self.idle):
            if connection.kept_alive:
                connection.hang_up()

    def resume_keep_alive(self) -> None:
        """The model process that drained alone was replaced and answers: keep
        connections alive again."""
        self.draining = False


class ClientConnection:
    """A client's socket as an HTTP worker uses it: each request must arrive within
    its deadline, and each response leaves in one write.

    Everything else is the wrapped socket's own.
    """

    def __init__(self, sock: socket.socket, arrivals: Arrivals):
        self._sock = sock
        self._arrivals = arrivals
        self._deadline: float | None = None
        # The answered request's deadline, for what is left of its body, and
        # whether its answer said `Connection: close`.
        self._answered_deadline: float | None = None
        self._answer_closes = False
        self._stalled = False
        self._refusing = False
        self._head = b""
        self._start = b""
        self._opened = time.monotonic()
        self._requests = 0

    def age(self) -> float:
        """Seconds since the connection was accepted."""
        return time.monotonic() - self._opened

    @property
    def kept_alive(self) -> bool:
        """It has carried a request before the one it may be waiting for."""
        return self._requests > 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recv(self, size: int) -> bytes:
        if self._refusing:
            return b""
        if self._deadline is None:
            return self._first_bytes(size)
        if not self._stalled:
            # Not all there after the first read: counted until it is all in.
            self._stalled = True
            self._arrivals.metrics.receiving.inc()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._timed_out()
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            self._timed_out()
        finally:
            self._sock.settimeout(None)
        # Only while the request line is still coming: never a body after its answer.
        if 0 < len(self._start) < REQUEST_LINE_BYTES and b"\n" not in self._start:
            self._start = (self._start + data)[:REQUEST_LINE_BYTES]
        return data

    def sendall(self, data: bytes) -> None:
        # gunicorn answers in the request's own version: HTTP/1.0 too.
        if data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            # An answer means the request is in (or refused). gunicorn writes a
            # response's head and body in two calls: hold the head for the body,
            # so the client gets one segment from one system call. Nothing is
            # held past the request's end (the worker's) or the close.
            self._answered_deadline = self._deadline
            self._start = b""
            self.request_received()
            closing = self._answer_closes = self._refusing or self._arrivals.draining
            self._head = self._closing_head(data) if closing else data
            return
        if self._head:
            data, self._head = self._head + data, b""
        self._sock.sendall(data)

    def send_held(self) -> None:
        """Send a response head still held for its body: a response with none (HEAD, OPTIONS, 304) ends without it."""
        if self._head:
            head, self._head = self._head, b""
            self._sock.sendall(head)

    @staticmethod
    def _closing_head(head: bytes) -> bytes:
        # gunicorn drops an application's Connection header, but this
        # connection closes after this answer: say so (RFC 9112, 9.6).
        return head.replace(b"\r\nConnection: keep-alive\r\n", b"\r\nConnection: close\r\n", 1)

    def request_received(self) -> None:
        """The whole request is in: stop its clock."""
        self._deadline = None
        if self._stalled:
            self._stalled = False
            self._arrivals.metrics.receiving.dec()

    def read_rest(self, body: Any) -> bool:
        """After the answer, read what is left of the request's body (an early
        404, 405 or 415 leaves it unread) on the request's own clock: gunicorn
        would read it as the start of the next request, on a new one. False
        when the connection is to end instead: its answer said so, or the
        worker stops."""
        if self._answer_closes or self._arrivals.stopping:
            return False
        self._deadline = self._answered_deadline
        # A stop or a drain hangs it up as one between requests: its answer is out.
        self._arrivals.idle.add(self)
        try:
            while body.read(65536):
                pass
        finally:
            self._arrivals.idle.discard(self)
            self.request_received()
        return True

    def request_path(self) -> str | None:
        """The path of the request being read as the routes would see it (as
        gunicorn splits and decodes it), as far as its request line has arrived;
        None before its target has begun, once it is answered, or for a target
        that is no URI at all."""
        target = self._start.split(b"\n", 1)[0].split(b" ", 2)[1:2]
        if not target:
            return None
        try:
            return unquote_to_wsgi_str(split_request_uri(target[0].decode("latin-1")).path)
        except ValueError:  # "http://[bad": no route has it
            return None

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
        try:
            with contextlib.suppress(OSError):
                self.send_held()
                if self._refusing:
                    self._linger()
        finally:  # a stopping worker may kill the greenlet mid-linger
            self._sock.close()

    def _linger(self) -> None:
        """Say we are done, then discard what the client still sends for a while (see LINGER_SECONDS)."""
        self._sock.shutdown(socket.SHUT_WR)
        deadline, left = time.monotonic() + LINGER_SECONDS, LINGER_BYTES
        while left > 0 and (remaining := deadline - time.monotonic()) > 0:
            self._sock.settimeout(remaining)
            data = self._sock.recv(65536)
            if not data:
                return
            left -= len(data)

    def _first_bytes(self, size: int) -> bytes:
        if self._arrivals.draining and self.kept_alive and not self._request_waiting():
            return b""
        self._arrivals.idle.add(self)
        self._sock.settimeout(self._arrivals.idle_seconds)
        try:
            data = self._sock.recv(size)
        except OSError:
            # Idle too long (a timeout), or hung up by `Arrivals.close_kept_alive`
            # (gevent wakes the read with an error): end the connection without a word.
            return b""
        finally:
            self._sock.settimeout(None)
            self._arrivals.idle.discard(self)
        if data:
            self._requests += 1
            self._start = data
            self._deadline = time.monotonic() + self._arrivals.arrival_seconds
        return data

    def _request_waiting(self) -> bool:
        """Bytes of a next request already in: it was sent, so it gets an answer."""
        self._sock.settimeout(0)
        try:
            return bool(self._sock.recv(1, socket.MSG_PEEK))
        except OSError:  # nothing yet (EAGAIN), or reset
            return False
        finally:
            self._sock.settimeout(None)

    def _timed_out(self) -> NoReturn:
        self.refuse_rest()
        self._arrivals.metrics.timeouts.inc()
        raise RequestTimeout(f"the request did not arrive within {self._arrivals.arrival_seconds:g} s") from None


def request_in() -> None:
    """The body is all read: the request has arrived, however long its answer now takes."""
    if connection := _current_connection():
        connection.request_received()


def refuse_rest_of_request() -> None:
    """After an answer that leaves part of the request unread (408, 413): close, don't drain."""
    if connection := _current_connection():
        connection.refuse_rest()


def _current_connection() -> ClientConnection | None:
    """The request's connection as the worker wrapped it; None under a test client or another server."""
    connection = request.environ.get("gunicorn.socket")
    return connection if isinstance(connection, ClientConnection) else None
