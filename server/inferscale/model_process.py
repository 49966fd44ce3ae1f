"""The pod's one model process: the model, its slots and its queue, served to the HTTP workers.

One process owns every model slot, so a request never waits behind a busy
slot while another is free, and the queue bound is the pod's, whichever HTTP
worker a request arrived on. Each HTTP worker keeps one Unix-socket
connection here and multiplexes its requests over it (see `wire`).
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from prometheus_client import CollectorRegistry

from inferscale import wire
from inferscale.backend import ModelStatus, Outcome
from inferscale.errors import InferenceError, InferenceFailed, Rejected
from inferscale.metrics import ModelMetrics
from inferscale.model_service import InferenceService, model_from_settings
from inferscale.settings import Settings

log = logging.getLogger(__name__)

RECV_BYTES = 256 * 1024
# How the process ends itself after an inference timed out, for the supervisor
# to tell from a crash.
TIMED_OUT_EXIT_CODE = 3


class WorkerConnection:
    """One HTTP worker's connection: replies come from many slot threads, one at a time."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._send_lock = threading.Lock()
        self.open = True
        # Its admitted work not yet answered; set operations are atomic, so the
        # reader thread adds and slot threads discard without a lock.
        self.unanswered: set[Future[Outcome]] = set()

    def withdraw_unstarted(self) -> None:
        """The worker is gone: its queued work would hold the pod's places for
        nobody, ahead of live requests. What already runs finishes."""
        for future in list(self.unanswered):
            future.cancel()

    def send(self, message: bytes) -> None:
        with self._send_lock:
            if not self.open:
                return  # the worker is gone; its answers have no one to go to
            try:
                self.sock.sendall(message)
            except OSError:
                self.open = False

    def close(self) -> None:
        with self._send_lock:
            self.open = False
        self.sock.close()


class ModelServer:
    """Accepts HTTP workers on `listener` and runs their requests on `service`."""

    def __init__(self, listener: socket.socket):
        self._listener = listener
        self._connections: set[WorkerConnection] = set()
        self._lock = threading.Lock()
        self._status = ModelStatus()
        # The listener outlives this process (the supervisor holds it for the
        # next one), so stopping must not shut it down: a pipe wakes the loop.
        self._stop_reader, self._stop_writer = os.pipe()
        # Set before `serve_forever`: the service publishes through this server.
        self.service: InferenceService | None = None

    def stop(self) -> None:
        os.write(self._stop_writer, b"x")

    def serve_forever(self) -> None:
        service = self.service
        if service is None:
            raise RuntimeError("set ModelServer.service before serving")
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._stop_reader, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._stop_reader in ready:
                    return
                self._accept(service)

    def _accept(self, service: InferenceService) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return  # a spurious wake-up: nothing to accept after all
        sock.setblocking(True)
        connection = WorkerConnection(sock)
        with self._lock:
            self._connections.add(connection)
            # Under the lock: a status published meanwhile reaches it after this one.
            connection.send(wire.status(self._status))
        threading.Thread(target=self._serve, args=(connection, service), name="worker-connection", daemon=True).start()

    def publish(self, status: ModelStatus) -> None:
        """Tell every HTTP worker the model's new state (they answer /ready from it)."""
        with self._lock:
            self._status = status
            connections = list(self._connections)
        for connection in connections:
            connection.send(wire.status(status))

    def _serve(self, connection: WorkerConnection, service: InferenceService) -> None:
        reader = wire.Reader()
        try:
            while data := connection.sock.recv(RECV_BYTES):
                for message in reader.feed(data):
                    self._infer(connection, service, message)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()
            connection.withdraw_unstarted()

    def _infer(self, connection: WorkerConnection, service: InferenceService, message: list) -> None:
        call_id = message[1]
        try:
            future = service.submit(wire.rows_of(message), lambda done: _reply(connection, call_id, done))
        except Rejected as error:
            connection.send(wire.failure(call_id, error))
            return
        connection.unanswered.add(future)
        if future.done():  # answered before it was added: `_reply` found nothing to discard
            connection.unanswered.discard(future)


def _reply(connection: WorkerConnection, call_id: int, done: Future[Outcome]) -> None:
    connection.unanswered.discard(done)
    if done.cancelled():
        return  # withdrawn: its worker is gone
    try:
        message = wire.result(call_id, done.result())
    except InferenceError as error:
        message = wire.failure(call_id, error)
    except BaseException:  # raised past the model's own errors: still answered, never left waiting
        log.exception("request %d failed outside the model's errors", call_id)
        message = wire.failure(call_id, InferenceFailed("the model process failed on this request"))
    connection.send(message)


def run(settings: Settings, listener: socket.socket) -> int:
    """The model process's main: load, serve until SIGTERM (drain) or SIGINT/SIGQUIT (stop now).
    After an inference over INFERENCE_TIMEOUT_SECONDS it ends itself, with
    TIMED_OUT_EXIT_CODE, for the supervisor to start another."""
    server = ModelServer(listener)
    service = InferenceService(
        settings, ModelMetrics(CollectorRegistry()), model_from_settings(settings), server.publish
    )
    server.service = service
    exit_code = [0]

    def drain_then_stop() -> None:
        if not service.drain(settings.graceful_shutdown_seconds):
            log.warning("drain took over %.0f s; stopping anyway", settings.graceful_shutdown_seconds)
            exit_code[0] = 1
        server.stop()

    def on_signal(signum, _frame) -> None:
        if signum == signal.SIGTERM:
            threading.Thread(target=drain_then_stop, name="drain", daemon=True).start()
        else:
            server.stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, on_signal)
    if settings.inference_timeout_seconds:
        threading.Thread(
            target=_enforce_inference_timeout,
            args=(service, settings.inference_timeout_seconds),
            name="inference-timeout",
            daemon=True,
        ).start()
    service.publish_status()
    service.start_loading()
    server.serve_forever()
    return exit_code[0]


def _enforce_inference_timeout(service: InferenceService, limit: float) -> None:
    try:
        restart_after_timeout(service, limit)
    except BaseException:
        # Work may be refused by now: only the end of this process ends that.
        log.exception("the inference time limit's watcher failed; restarting the model process")
    os._exit(TIMED_OUT_EXIT_CODE if service.status().restarting else 1)


def restart_after_timeout(
    service: InferenceService,
    limit: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    cpu_clock: Callable[[], float] = time.process_time,
) -> int:
    """Wait for an inference to run over `limit` seconds, answer it with 504,
    and return, how many timed out, once the process may end to be replaced.

    A slot past its limit may be stuck for good in a call that releases the GIL
    (a hung device, a read that never returns), where the heartbeat goes on and
    the watchdog sees nothing. Python cannot stop that thread, so only a new
    process gets the slot back. Meanwhile nothing new is taken, the queue is
    answered with 503 (a hung device usually hangs every slot, and nothing of
    theirs ran), and what still runs ends within the limit or times out too."""
    executor, interval = service.executor, min(1.0, limit / 10)

    def look_again() -> None:
        # A look much later than due while this process used next to no CPU:
        # it did not run (the pod paused whole, a stopped process), and what
        # ran through that is not charged for it. A look made late by a
        # thread holding the GIL spends CPU, and is not excused.
        running, due, cpu = executor.running_now(), clock() + interval, cpu_clock()
        sleep(interval)
        late = clock() - due
        if late > interval and cpu_clock() - cpu < interval:
            executor.excuse_pause(late, running)

    # Taken out before the restart is prepared: one that returns meanwhile
    # cannot leave a restart with nothing timed out.
    while not (overrun := executor.take_overrunning(limit)):
        look_again()
    queued = service.prepare_restart("an inference ran over INFERENCE_TIMEOUT_SECONDS")
    timed_out = executor.time_out(overrun, limit)
    log.error(
        "%d inference(s) ran over INFERENCE_TIMEOUT_SECONDS=%g: answered 504, and %d queued request(s) 503; "
        "restarting the model process to free the stuck slot(s) once the %d still running are answered",
        timed_out,
        limit,
        queued,
        executor.running,
    )
    # Until every reply is written, not only every slot given back; each
    # running one ends or times out within the limit, and two looks more.
    for _ in range(math.ceil(limit / interval) + 2):
        if not executor.unanswered:
            return timed_out
        look_again()
        timed_out += executor.time_out(executor.take_overrunning(limit), limit)
    if executor.unanswered:
        log.warning("%d request(s) still unanswered; restarting anyway", executor.unanswered)
    return timed_out
