"""Model slots and a bounded wait queue in front of them.

A request holds a slot for seconds, so the executor admits at most
`slots + max_queue` requests and refuses the rest at once: a caller learns
"busy, retry later" in milliseconds instead of tying up a server thread,
and nothing it did admit is ever dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from inferscale.backend import Outcome
from inferscale.errors import Overloaded, ShuttingDown


class ExecutorObserver(Protocol):
    def admitted(self) -> None: ...
    def withdrawn(self) -> None: ...
    def started(self, queue_seconds: float) -> None: ...
    def finished(self, inference_seconds: float) -> None: ...


class ModelExecutor:
    """Runs `work(payload)` on `slots` threads with at most `max_queue` waiting.

    `gate` holds queued work back until it is set (the model has loaded); that
    wait counts as queue time, since the caller waits for a usable slot.
    """

    def __init__(
        self,
        work: Callable[[Any], Any],
        slots: int,
        max_queue: int,
        observer: ExecutorObserver,
        gate: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._work = work
        self._capacity = slots + max_queue
        self._observer = observer
        self._gate = gate or _open_gate()
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="model-slot")
        self._lock = threading.Condition()
        self._admitted = 0
        self._draining = False

    @property
    def admitted(self) -> int:
        """Requests queued or running now."""
        with self._lock:
            return self._admitted

    @property
    def draining(self) -> bool:
        return self._draining

    def submit(self, payload: Any) -> Future[Outcome]:
        """Admit `payload` or raise `Rejected`. Cancelling the future withdraws
        work that has not started: its place is free again."""
        with self._lock:
            if self._draining:
                raise ShuttingDown("the server is shutting down")
            if self._admitted >= self._capacity:
                raise Overloaded(f"all {self._capacity} model slots and queue places are taken")
            self._admitted += 1
        self._observer.admitted()
        future = self._pool.submit(self._run, payload, self._clock())
        future.add_done_callback(self._release_if_withdrawn)
        return future

    def drain(self, timeout: float) -> bool:
        """Refuse new work, then wait up to `timeout` s for admitted work; True if all done."""
        self.refuse_new_work()
        return self.wait_idle(timeout)

    def refuse_new_work(self) -> None:
        with self._lock:
            self._draining = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` s until no work is admitted; True if none is."""
        deadline = self._clock() + timeout
        with self._lock:
            while self._admitted:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def shutdown(self) -> None:
        """Wait until every started request has run and its callbacks have returned."""
        self._pool.shutdown(wait=True)

    def _release_if_withdrawn(self, future: Future[Outcome]) -> None:
        # `cancel()` succeeds only on work still queued: it never runs, so its
        # place is given back here (work that ran gives it back in `_run`).
        if future.cancelled():
            self._observer.withdrawn()
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1
            self._lock.notify_all()

    def _run(self, payload: Any, admitted_at: float) -> Outcome:
        self._gate.wait()
        started = self._clock()
        self._observer.started(started - admitted_at)
        try:
            value = self._work(payload)
        finally:
            inference_seconds = self._clock() - started
            self._observer.finished(inference_seconds)
            self._release()
        return Outcome(value, started - admitted_at, inference_seconds)


def _open_gate() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate
