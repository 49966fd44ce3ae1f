"""Model slots and a bounded wait queue in front of them.

A request holds a slot for seconds, so the executor admits at most
`slots + max_queue` requests and refuses the rest at once: a caller learns
"busy, retry later" in milliseconds instead of tying up a server thread,
and nothing it did admit is ever dropped.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from inferscale.backend import Outcome
from inferscale.errors import InferenceError, InferenceTimedOut, Overloaded, Rejected, ShuttingDown

log = logging.getLogger(__name__)
OBSERVER_FAILURES_LOGGED_EVERY = 1000


class ExecutorObserver(Protocol):
    def admitted(self) -> None: ...
    def withdrawn(self) -> None: ...
    def started(self, queue_seconds: float) -> None: ...
    def finished(self, inference_seconds: float) -> None: ...


class ModelExecutor:
    """Runs `work(payload)` on `slots` threads with at most `max_queue` waiting.

    `gate` holds queued work back until it is set (the model has loaded); that
    wait counts as queue time, since the caller waits for a usable slot.

    Each admitted future is answered exactly once, by whoever takes it out of
    `_queued` (to start it, or to refuse it unstarted) and then out of
    `_running` (its work returning, or `take_overrunning`).

    The observer only counts: an error it raises is logged, and never changes
    an answer or keeps a place.
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
        self._observer_failures = itertools.count(1)
        self._lock = threading.Condition()
        # Places taken (queued or running), and admitted requests not yet
        # answered: a place is free just before its answer goes out.
        self._admitted = 0
        self._unanswered = 0
        # What `submit` raises once no new work is taken.
        self._refusal: Rejected | None = None
        # Admitted and not started; and what runs now, since when (a pause it
        # ran through excused). Both change under the lock.
        self._queued: set[Future[Outcome]] = set()
        self._running: dict[Future[Outcome], float] = {}

    @property
    def admitted(self) -> int:
        """Requests queued or running now."""
        with self._lock:
            return self._admitted

    @property
    def running(self) -> int:
        """Inferences running now and not yet answered."""
        return len(self._running)

    @property
    def unanswered(self) -> int:
        """Requests admitted and not yet answered (their callbacks not yet returned)."""
        with self._lock:
            return self._unanswered

    @property
    def draining(self) -> bool:
        return isinstance(self._refusal, ShuttingDown)

    def submit(self, payload: Any, on_done: Callable[[Future[Outcome]], None] | None = None) -> Future[Outcome]:
        """Admit `payload` or raise `Rejected`. Cancelling the future withdraws
        work that has not started: its place is free again. `on_done` (which
        writes the reply) is called before the request counts as answered."""
        future: Future[Outcome] = Future()
        future.add_done_callback(self._release_if_withdrawn)
        if on_done is not None:
            future.add_done_callback(on_done)
        with self._lock:
            if self._refusal is not None:
                # A new instance each time: one raised in many threads would share its traceback.
                raise type(self._refusal)(*self._refusal.args)
            if self._admitted >= self._capacity:
                raise Overloaded(f"all {self._capacity} model slots and queue places are taken")
            self._admitted += 1
            self._unanswered += 1
            # With its admission: `abandon_queued` after a refusal finds every admitted one.
            self._queued.add(future)
        self._observe(self._observer.admitted)
        self._pool.submit(self._run, future, payload, self._clock())
        return future

    def refuse_new_work(self, refusal: Rejected | None = None) -> None:
        """From now on `submit` raises `refusal`; by default `ShuttingDown`,
        which is draining, and stays so whatever is refused after."""
        with self._lock:
            if not self.draining:
                self._refusal = refusal or ShuttingDown("the server is shutting down")

    def abandon_queued(self, error: InferenceError) -> int:
        """Answer every admitted request that has not started with `error`;
        how many there were."""
        with self._lock:
            queued = self._queued.copy()
        abandoned = 0
        for future in queued:
            if self._take_queued(future):
                self._settle(self._observer.withdrawn, future.set_exception, type(error)(*error.args))
                abandoned += 1
        return abandoned

    def running_now(self) -> set[Future[Outcome]]:
        with self._lock:
            return set(self._running)

    def excuse_pause(self, seconds: float, futures: Iterable[Future[Outcome]]) -> None:
        """This process did not run for `seconds` (the pod paused whole, the
        process stopped) while `futures` ran: they are not charged for it."""
        with self._lock:
            for future in futures:
                if future in self._running:
                    self._running[future] += seconds

    def take_overrunning(self, seconds: float) -> dict[Future[Outcome], float]:
        """Take out what has been running for longer than `seconds` (pauses
        excused), with how long each ran, for `time_out` to answer: should its
        work return after all, that answers nothing."""
        with self._lock:
            now = self._clock()
            overrun = {future: now - started for future, started in self._running.items() if now - started > seconds}
            for future in overrun:
                del self._running[future]
        return overrun

    def time_out(self, overrun: dict[Future[Outcome], float], seconds: float) -> int:
        """Answer what `take_overrunning` took with `InferenceTimedOut` and give
        their places back; how many there were.

        Their slot threads cannot be stopped from outside and stay taken until
        their work returns, if ever: only a new process gets them back for sure."""
        late = 0
        for future, inference_seconds in overrun.items():
            if future.done():
                continue  # answered by an earlier call with the same take
            error = InferenceTimedOut(f"the inference ran over its {seconds:g} s time limit")
            self._settle(partial(self._observer.finished, inference_seconds), future.set_exception, error)
            late += 1
        return late

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` s until every admitted request has been answered
        (its callbacks, which write the replies, have returned); True if so."""
        deadline = self._clock() + timeout
        with self._lock:
            while self._unanswered:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def _take_queued(self, future: Future[Outcome]) -> bool:
        """Take `future` out of the queue to start or refuse it: False if it was
        taken already, or withdrawn (its place then came back on `cancel()`)."""
        with self._lock:
            if future not in self._queued:
                return False
            self._queued.remove(future)
        return future.set_running_or_notify_cancel()

    def _release_if_withdrawn(self, future: Future[Outcome]) -> None:
        # `cancel()` succeeds only on work still queued: it never runs, so its
        # place is given back here (work that ran gives it back in `_finish`).
        if future.cancelled():
            with self._lock:
                self._queued.discard(future)
            self._settle(self._observer.withdrawn)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1
            self._lock.notify_all()

    def _answered(self) -> None:
        with self._lock:
            self._unanswered -= 1
            self._lock.notify_all()

    def _run(self, future: Future[Outcome], payload: Any, admitted_at: float) -> None:
        # Still queued while the gate is shut: a load that fails answers it
        # (abandon_queued), and a caller may withdraw it meanwhile.
        self._gate.wait()
        if not self._take_queued(future):
            return  # withdrawn or abandoned while queued
        with self._lock:
            started = self._clock()
            self._running[future] = started
        self._observe(self._observer.started, started - admitted_at)
        try:
            value = self._work(payload)
        # Everything, as a pool's work item catches: the pool's own future, which
        # would hold it, is not the caller's.
        except BaseException as error:
            self._finish(future, self._clock() - started, future.set_exception, error)
        else:
            inference_seconds = self._clock() - started
            outcome = Outcome(value, started - admitted_at, inference_seconds)
            self._finish(future, inference_seconds, future.set_result, outcome)
        finally:
            # An error's traceback holds this frame: without this, the request's
            # rows would live on in a reference cycle until the collector runs.
            del future, payload

    def _finish(self, future: Future[Outcome], inference_seconds: float, answer: Callable[[Any], None], value) -> None:
        """End running `future`, free its place, then `answer(value)`; unless
        `take_overrunning` took it first, and answers it itself."""
        with self._lock:
            if self._running.pop(future, None) is None:
                return
        self._settle(partial(self._observer.finished, inference_seconds), answer, value)

    def _settle(self, observe: Callable[[], None], answer: Callable[[Any], None] | None = None, value=None) -> None:
        """Tell the observer, free the place, `answer(value)` and count it
        answered, whatever raises in between.

        The place is free before the answer, as a pool's future has it: a caller
        woken by the answer may submit again at once."""
        self._observe(observe)
        self._release()
        try:
            if answer is not None:
                answer(value)
        finally:
            self._answered()

    def _observe(self, observe: Callable[..., None], *args: Any) -> None:
        try:
            observe(*args)
        except Exception:
            # Broken metrics fail every call: the first in full, then a line now and then.
            failures = next(self._observer_failures)
            if failures == 1:
                log.exception("the executor's observer failed; the request goes on")
            elif failures % OBSERVER_FAILURES_LOGGED_EVERY == 0:
                log.error("the executor's observer has failed %d times; the requests went on", failures)


def _open_gate() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate
