"""Slots, the bounded queue and draining, without HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from inferscale.executor import Draining, ModelExecutor, QueueFull


class Recorder:
    def __init__(self):
        self.events = []

    def admitted(self):
        self.events.append("admitted")

    def started(self, queue_seconds):
        self.events.append(("started", queue_seconds))

    def finished(self, inference_seconds):
        self.events.append(("finished", inference_seconds))


def blocking_work(release: threading.Event):
    def work(payload):
        release.wait(10)
        return payload * 2

    return work


def test_admits_slots_plus_queue_and_refuses_the_rest_at_once():
    release = threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=2, max_queue=3, observer=Recorder())
    futures = [executor.submit(n) for n in range(5)]
    started = time.monotonic()
    with pytest.raises(QueueFull, match="all 5 model slots and queue places are taken"):
        executor.submit(99)
    assert time.monotonic() - started < 0.1
    release.set()
    assert [f.result(5).value for f in futures] == [0, 2, 4, 6, 8]
    assert executor.admitted == 0
    executor.submit(1).result(5)


def test_queue_wait_and_inference_time_are_measured_apart():
    executor = ModelExecutor(lambda _: time.sleep(0.2), slots=1, max_queue=1, observer=Recorder())
    first, second = executor.submit(None), executor.submit(None)
    a, b = first.result(5), second.result(5)
    assert a.queue_seconds < 0.05 and a.inference_seconds == pytest.approx(0.2, abs=0.05)
    assert b.queue_seconds == pytest.approx(0.2, abs=0.05)
    assert b.inference_seconds == pytest.approx(0.2, abs=0.05)


def test_observer_sees_admission_start_and_finish_in_order():
    recorder = Recorder()
    ModelExecutor(lambda _: None, slots=1, max_queue=0, observer=recorder).submit(None).result(5)
    assert [e if isinstance(e, str) else e[0] for e in recorder.events] == [
        "admitted", "started", "finished"
    ]


def test_gate_holds_work_queued_and_counts_the_wait_as_queue_time():
    gate = threading.Event()
    executor = ModelExecutor(lambda p: p, slots=1, max_queue=1, observer=Recorder(), gate=gate)
    future = executor.submit("x")
    time.sleep(0.2)
    assert not future.done()
    gate.set()
    outcome = future.result(5)
    assert outcome.value == "x" and outcome.queue_seconds >= 0.2


def test_a_failing_model_frees_its_slot():
    def fail(_):
        raise ValueError("boom")

    executor = ModelExecutor(fail, slots=1, max_queue=0, observer=Recorder())
    with pytest.raises(ValueError):
        executor.submit(None).result(5)
    assert executor.admitted == 0


def test_drain_refuses_new_work_and_waits_for_admitted_work():
    release = threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=1, max_queue=2, observer=Recorder())
    futures = [executor.submit(n) for n in range(3)]
    result = {}
    drainer = threading.Thread(target=lambda: result.update(done=executor.drain(10)))
    drainer.start()
    time.sleep(0.1)
    with pytest.raises(Draining):
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
