"""An HTTP worker's line to the pod's model process (see `model_process`).

One connection per worker carries every request of that worker at once; a
background reader matches replies to callers by id and keeps the model's
status current, so /ready never waits for a round trip. If the model process
dies, every caller waiting on it is answered at once (`InferenceLost`) and the
reader reconnects to its successor.

Under gunicorn's gevent workers `threading` and `socket` are cooperative
(monkey-patched), which is why they are looked up when used, not imported by
name: the reader is then a greenlet and a waiting caller costs no thread.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time

import numpy as np

from inferscale import wire
from inferscale.backend import ModelStatus, Outcome
from inferscale.errors import InferenceError, InferenceLost, ModelUnavailable

log = logging.getLogger(__name__)

RECV_BYTES = 256 * 1024
RECONNECT_SECONDS = 0.1
# How long a request waits for the line to the model process when it is down:
# a worker takes requests from its first moment, before its line is up, and a
# model process the supervisor restarts is back within a second or two.
CONNECT_WAIT_SECONDS = 2.0
UNREACHABLE = ModelStatus(reachable=False)


class _Call:
    """One request waiting for its reply."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.error: InferenceError | None = None

    def resolve(self, message: list) -> None:
        if message[0] == wire.RESULT:
            self.outcome = wire.outcome_of(message)
        else:
            self.error = wire.error_of(message)
        self.done.set()

    def fail(self, error: InferenceError) -> None:
        self.error = error
        self.done.set()


class ModelClient:
    """The `InferenceBackend` of an HTTP worker: the model runs in another process."""

    def __init__(self, socket_path: str):
        self._path = socket_path
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count()
        self._status = UNREACHABLE
        self._reachable = threading.Event()
        threading.Thread(target=self._keep_connected, name="model-client", daemon=True).start()

    def status(self) -> ModelStatus:
        return self._status

    def infer(self, rows: np.ndarray) -> Outcome:
        call_id, call = next(self._ids), _Call()
        message = wire.infer(call_id, rows)
        self._reachable.wait(CONNECT_WAIT_SECONDS)
        with self._send_lock:
            if self._sock is None:
                raise ModelUnavailable("the model process is restarting")
            self._calls[call_id] = call
            try:
                self._sock.sendall(message)
            except OSError:
                del self._calls[call_id]
                raise ModelUnavailable("the model process is restarting") from None
        call.done.wait()
        if call.error is not None:
            raise call.error
        # `done` is set once the outcome or the error is.
        assert call.outcome is not None
        return call.outcome

    def _keep_connected(self) -> None:
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.connect(self._path)
                    self._read(sock)
            except OSError as error:
                log.debug("model process connection: %s", error)
            self._disconnected()
            time.sleep(RECONNECT_SECONDS)

    def _read(self, sock: socket.socket) -> None:
        reader = wire.Reader()
        while data := sock.recv(RECV_BYTES):
            for message in reader.feed(data):
                if message[0] == wire.STATUS:
                    self._status_from(sock, wire.status_of(message))
                else:
                    self._calls.pop(message[1]).resolve(message)

    def _status_from(self, sock: socket.socket, status: ModelStatus) -> None:
        # Only this reader sets `_sock`, so it reads it without the lock. It
        # must not wait for the lock on a later status: a sender holds it while
        # its sendall waits for the model process, which may itself be waiting
        # for this reader to take its replies.
        if self._sock is sock:
            self._status = status
        else:
            self._connected(sock, status)

    def _connected(self, sock: socket.socket, status: ModelStatus) -> None:
        # Requests go out only once the model process has spoken: a connection
        # waiting in the backlog of a restarting model process answers nothing.
        with self._send_lock:
            self._sock = sock
        self._status = status
        self._reachable.set()

    def _disconnected(self) -> None:
        with self._send_lock:
            self._sock = None
            calls, self._calls = self._calls, {}
        self._reachable.clear()
        self._status = UNREACHABLE
        if calls:
            log.warning("model process went away under %d request(s)", len(calls))
        for call in calls.values():
            call.fail(InferenceLost("the model process died while running this request"))
