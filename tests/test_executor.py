"""Slots, the bounded queue and draining (and the status a drain tells the workers), without HTTP."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from inferscale.errors import Overloaded, ShuttingDown
from inferscale.executor import ModelExecutor
from inferscale.metrics import ModelMetrics
from inferscale.model_service import InferenceService, model_from_settings
from inferscale.settings import Settings


class Recorder:
    def __init__(self):
        self.events = []

    def admitted(self):
        self.events.append("admitted")

    def started(self, queue_seconds):
        self.events.append(("started", queue_seconds))

    def finished(self, inference_seconds):
        self.events.append(("finished", inference_seconds))

    def withdrawn(self):
        self.events.append("withdrawn")


def blocking_work(release: threading.Event):
    def work(payload):
        release.wait(10)
        return payload * 2

    return work


class FakeClock:
    """Time that passes only when the work says so: the test measures work, not the machine."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_admits_slots_plus_queue_and_refuses_the_rest_at_once():
    release = threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=2, max_queue=3, observer=Recorder())
    futures = [executor.submit(n) for n in range(5)]
    # Nothing admitted can finish until `release`: a refusal that waited for a
    # slot would never come back.
    refusal = {}

    def submit_one_more():
        with pytest.raises(Overloaded, match="all 5 model slots and queue places are taken"):
            executor.submit(99)
        refusal["raised"] = True

    refuser = threading.Thread(target=submit_one_more)
    refuser.start()
    refuser.join(10)
    assert refusal == {"raised": True}
    release.set()
    assert [f.result(5).value for f in futures] == [0, 2, 4, 6, 8]
    assert executor.admitted == 0
    executor.submit(1).result(5)


def test_queue_wait_and_inference_time_are_measured_apart():
    clock, release = FakeClock(), threading.Event()

    def infer(_):
        release.wait(10)
        clock.now += 0.2  # one inference's worth of time

    executor = ModelExecutor(infer, slots=1, max_queue=1, observer=Recorder(), clock=clock)
    first, second = executor.submit(None), executor.submit(None)
    release.set()
    a, b = first.result(5), second.result(5)
    assert (a.queue_seconds, a.inference_seconds) == (0.0, pytest.approx(0.2))
    # The second waited exactly the first's inference, then took its own.
    assert (b.queue_seconds, b.inference_seconds) == (pytest.approx(0.2), pytest.approx(0.2))


def test_observer_sees_admission_start_and_finish_in_order():
    recorder = Recorder()
    ModelExecutor(lambda _: None, slots=1, max_queue=0, observer=recorder).submit(None).result(5)
    assert [e if isinstance(e, str) else e[0] for e in recorder.events] == ["admitted", "started", "finished"]


def test_gate_holds_work_queued_and_counts_the_wait_as_queue_time():
    clock, gate = FakeClock(), threading.Event()
    executor = ModelExecutor(lambda p: p, slots=1, max_queue=1, observer=Recorder(), gate=gate, clock=clock)
    future = executor.submit("x")
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    clock.now += 3.0  # the model took 3 s to load
    gate.set()
    outcome = future.result(5)
    assert outcome.value == "x" and outcome.queue_seconds == pytest.approx(3.0)


def test_a_failing_model_frees_its_slot():
    def fail(_):
        raise ValueError("boom")

    executor = ModelExecutor(fail, slots=1, max_queue=0, observer=Recorder())
    with pytest.raises(ValueError):
        executor.submit(None).result(5)
    assert executor.admitted == 0


def test_withdrawn_work_never_runs_and_gives_its_place_back():
    release = threading.Event()
    ran = []

    def work(payload):
        ran.append(payload)
        release.wait(10)
        return payload

    recorder = Recorder()
    executor = ModelExecutor(work, slots=1, max_queue=1, observer=recorder)
    first = executor.submit(1)
    queued = executor.submit(2)
    with pytest.raises(Overloaded):
        executor.submit(3)
    assert queued.cancel()
    assert recorder.events.count("withdrawn") == 1 and executor.admitted == 1
    third = executor.submit(3)  # the withdrawn one's place
    release.set()
    assert (first.result().value, third.result().value) == (1, 3)
    assert ran == [1, 3]
    assert executor.wait_idle(5) and executor.admitted == 0


def test_drain_refuses_new_work_and_waits_for_admitted_work():
    release = threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=1, max_queue=2, observer=Recorder())
    futures = [executor.submit(n) for n in range(3)]
    result = {}
    drainer = threading.Thread(target=lambda: result.update(done=executor.drain(10)))
    drainer.start()
    while not executor.draining:
        time.sleep(0.01)
    with pytest.raises(ShuttingDown):
        executor.submit(7)
    assert drainer.is_alive()
    release.set()
    drainer.join(5)
    assert result == {"done": True}
    assert [f.result(1).value for f in futures] == [0, 2, 4]


def test_drain_gives_up_after_its_timeout():
    release = threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=1, max_queue=0, observer=Recorder())
    executor.submit(1)
    assert executor.drain(0.2) is False
    release.set()


def test_the_drain_is_the_last_status_told_when_the_load_ends_beside_it():
    """SIGTERM as the load ends: the load's status, computed before the drain
    began, must not reach the workers after the drain's, or /ready would say
    ready through the whole drain."""
    told = []
    load_telling, drain_told = threading.Event(), threading.Event()

    def on_status(status):
        if status.loaded and not status.draining:
            load_telling.set()
            drain_told.wait(1)  # the drain would tell its own status meanwhile
        told.append(status)
        if status.draining:
            drain_told.set()

    settings = Settings(inference_duration_seconds=0, model_load_seconds=0, model_memory_mb=0)
    service = InferenceService(settings, ModelMetrics(CollectorRegistry()), model_from_settings(settings), on_status)
    service.start_loading()
    assert load_telling.wait(10)
    drainer = threading.Thread(target=service.drain, args=(1.0,))
    drainer.start()
    drainer.join(10)
    assert [status.draining for status in told] == [False, True]
