"""Slots, the bounded queue and draining (and the status a drain tells the workers), without HTTP."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inferscale.errors import InferenceLost, InferenceTimedOut, ModelUnavailable, Overloaded, ShuttingDown
from inferscale.executor import ModelExecutor
from inferscale.metrics import ModelMetrics
from inferscale.model import Model
from inferscale.model_process import restart_after_timeout
from inferscale.model_service import InferenceService, model_from_settings
from inferscale.settings import Settings
from localcluster.processes import wait_until


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


def recording_work(release: threading.Event, ran: list):
    """Notes each payload as it starts, then holds its slot until `release`."""

    def work(payload):
        ran.append(payload)
        release.wait(10)
        return payload

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
    release, ran = threading.Event(), []
    recorder = Recorder()
    executor = ModelExecutor(recording_work(release, ran), slots=1, max_queue=1, observer=recorder)
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


def drain(executor: ModelExecutor, timeout: float) -> bool:
    """As the SIGTERM drain does."""
    executor.refuse_new_work()
    return executor.wait_idle(timeout)


def test_drain_refuses_new_work_and_waits_for_admitted_work():
    release = threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=1, max_queue=2, observer=Recorder())
    futures = [executor.submit(n) for n in range(3)]
    result = {}
    drainer = threading.Thread(target=lambda: result.update(done=drain(executor, 10)))
    drainer.start()
    wait_until(lambda: executor.draining, "the drain refusing new work", timeout=5, interval=0.005)
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
    assert drain(executor, 0.2) is False
    release.set()


def test_a_drain_waits_for_the_answers_to_be_delivered_not_only_for_the_slots():
    """The model process ends once its drain returns: a reply still being
    written then (the future's callback) would be lost."""
    release, delivering, delivered = threading.Event(), threading.Event(), threading.Event()
    executor = ModelExecutor(blocking_work(release), slots=1, max_queue=0, observer=Recorder())

    def deliver(_done):
        delivering.set()
        delivered.wait(10)

    executor.submit(1, on_done=deliver)
    result = {}
    drainer = threading.Thread(target=lambda: result.update(done=drain(executor, 10)))
    drainer.start()
    release.set()
    assert delivering.wait(5)
    assert executor.admitted == 0  # the slot is free before the answer goes out
    drainer.join(0.3)
    assert drainer.is_alive(), "the drain ended while the answer was still being delivered"
    delivered.set()
    drainer.join(5)
    assert result == {"done": True}


def wait_until_running(executor: ModelExecutor, count: int) -> None:
    wait_until(lambda: executor.running >= count, f"{count} running", timeout=5, interval=0.005)


def wait_until_all_answered(executor: ModelExecutor) -> None:
    """By the machine's clock: `wait_idle` on a fake clock would never give up."""
    wait_until(lambda: not executor.unanswered, "every request answered", timeout=5, interval=0.005)


def test_an_inference_over_the_time_limit_is_answered_timed_out_and_gives_its_place_back():
    clock, unstick = FakeClock(), threading.Event()
    recorder = Recorder()
    executor = ModelExecutor(blocking_work(unstick), slots=1, max_queue=1, observer=recorder, clock=clock)
    stuck = executor.submit(1)
    wait_until_running(executor, 1)
    queued = executor.submit(2)
    clock.now += 5.0
    assert executor.take_overrunning(5.0) == {}  # at the limit, not over it
    clock.now += 0.1
    overrun = executor.take_overrunning(5.0)
    assert overrun == {stuck: pytest.approx(5.1)}  # queued work never overruns
    assert executor.take_overrunning(5.0) == {} and not stuck.done()  # taken once, answered below
    assert executor.time_out(overrun, 5.0) == 1
    assert executor.time_out(overrun, 5.0) == 0  # answered once only
    with pytest.raises(InferenceTimedOut, match="over its 5 s time limit"):
        stuck.result(0)
    # Its place is free (the stuck thread is not), and it is answered once only.
    assert executor.admitted == 1 and executor.running == 0 and not queued.done()
    assert recorder.events.count(("finished", pytest.approx(5.1))) == 1
    # Should the work come back after all, its late result goes nowhere.
    unstick.set()
    assert queued.result(5).value == 4
    assert isinstance(stuck.exception(0), InferenceTimedOut)
    wait_until_all_answered(executor)
    assert executor.admitted == 0
    assert [event[0] for event in recorder.events if isinstance(event, tuple)].count("finished") == 2


class WatchedGate(threading.Event):
    """A gate that says when a slot thread waits at it."""

    def __init__(self):
        super().__init__()
        self.waited = threading.Event()

    def wait(self, timeout=None):
        self.waited.set()
        return super().wait(timeout)


def test_work_held_at_the_gate_never_overruns_however_long_the_load():
    clock, gate = FakeClock(), WatchedGate()
    executor = ModelExecutor(lambda p: p, slots=1, max_queue=1, observer=Recorder(), gate=gate, clock=clock)
    future = executor.submit("x")
    assert gate.waited.wait(5)
    clock.now += 60.0  # the model loads for a minute
    assert executor.take_overrunning(5.0) == {}
    gate.set()
    assert future.result(5).value == "x"


def test_abandoned_queued_work_is_answered_at_once_and_never_runs():
    release, ran = threading.Event(), []
    recorder = Recorder()
    executor = ModelExecutor(recording_work(release, ran), slots=1, max_queue=2, observer=recorder)
    running = executor.submit(1)
    wait_until_running(executor, 1)
    queued = [executor.submit(2), executor.submit(3)]
    executor.refuse_new_work(ModelUnavailable("the model process is restarting"))
    with pytest.raises(ModelUnavailable, match="restarting"):
        executor.submit(4)
    assert not executor.draining  # refused for a restart, not a pod stopping
    assert executor.abandon_queued(InferenceLost("restarting before running this")) == 2
    for future in queued:
        with pytest.raises(InferenceLost):
            future.result(0)
    assert executor.admitted == 1 and recorder.events.count("withdrawn") == 2
    release.set()
    assert running.result(5).value == 1
    assert executor.wait_idle(5) and ran == [1]


def test_a_pod_that_drains_stays_draining_whatever_is_refused_after():
    executor = ModelExecutor(lambda p: p, slots=1, max_queue=0, observer=Recorder())
    executor.refuse_new_work()
    executor.refuse_new_work(ModelUnavailable("the model process is restarting"))
    assert executor.draining
    with pytest.raises(ShuttingDown):
        executor.submit(1)


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


class HungDevice:
    """The model's wait for its accelerator, which returns only when told (the GIL released meanwhile)."""

    def __init__(self):
        self.answers = threading.Event()

    def wait(self, _seconds: float) -> None:
        self.answers.wait(30)


def hanging_service(clock: FakeClock, told: list) -> tuple[InferenceService, HungDevice]:
    """Two slots and two queue places on a device that hangs; `told` gets (time, status) pairs."""
    settings = Settings(
        inference_duration_seconds=1, model_load_seconds=0, model_memory_mb=0, model_concurrency=2, max_queue=2
    )
    device = HungDevice()
    model = Model(model_from_settings(settings).spec, sleep=device.wait)
    on_status = lambda status: told.append((clock.now, status))  # noqa: E731
    service = InferenceService(settings, ModelMetrics(CollectorRegistry()), model, on_status, clock=clock)
    service.start_loading().join(10)
    return service, device


ROWS = np.ones((1, 3))


def test_after_an_inference_over_the_limit_the_queue_is_refused_and_the_rest_time_out_before_the_restart():
    """Every slot hangs, as on a hung device: the one over the limit gets 504,
    the queue 503 at once, and the other running one 504 at its own limit;
    only then may the process end."""
    clock, told = FakeClock(), []
    service, device = hanging_service(clock, told)
    first = service.submit(ROWS)
    wait_until_running(service.executor, 1)
    clock.now += 2.0
    second = service.submit(ROWS)
    wait_until_running(service.executor, 2)
    queued = [service.submit(ROWS), service.submit(ROWS)]
    looked_at = []

    def sleep(seconds):
        looked_at.append(clock.now)
        clock.now += seconds

    try:
        assert restart_after_timeout(service, 3.0, sleep, clock) == 2
        for future in (first, second):
            with pytest.raises(InferenceTimedOut, match="over its 3 s time limit"):
                future.result(0)
        for future in queued:  # nothing of theirs ran: safe to retry
            with pytest.raises(InferenceLost, match="restarting before running this"):
                future.result(0)
        # The second was answered at its own limit, not when the first was.
        assert looked_at[-1] == pytest.approx(100.0 + 2.0 + 3.0, abs=0.31)
        _, status = told[-1]
        assert status.restarting and not status.draining and not status.ready
        assert service.metrics.model_ready.collect()[0].samples[0].value == 0
        with pytest.raises(ModelUnavailable):
            service.submit(ROWS)
        assert service.executor.admitted == 0 and service.executor.unanswered == 0
    finally:
        device.answers.set()


def test_a_pause_of_the_whole_pod_is_not_charged_to_the_inferences_running_through_it():
    """Ctrl-Z or a cgroup freezer for 30 s, with a limit of 3: the inference
    running through it times out 3 s of running after it began, not at once;
    one that starts as the pod resumes gets no credit for the pause."""
    clock, told = FakeClock(), []
    service, device = hanging_service(clock, told)
    running = service.submit(ROWS)
    wait_until_running(service.executor, 1)
    looks, after_the_pause = [], []

    def sleep(seconds):
        looks.append(clock.now)
        clock.now += seconds
        if len(looks) == 2:  # frozen in its second sleep; a request starts on resume
            clock.now += 30.0
            after_the_pause.append(service.submit(ROWS))
            wait_until_running(service.executor, 2)

    try:
        # Its own CPU time (process_time) stays nearly still while it waits on the fake clock.
        assert restart_after_timeout(service, 3.0, sleep, clock) == 2
    finally:
        device.answers.set()
    for future in (running, *after_the_pause):
        with pytest.raises(InferenceTimedOut):
            future.result(0)
    restarted_at = next(at for at, status in told if status.restarting)
    assert 100.0 + 30.0 + 3.0 < restarted_at <= 100.0 + 30.0 + 3.0 + 0.3 + 1e-9
    # The second, started at 130.6, timed out at its own limit, in the wait before the restart.
    assert looks[-1] == pytest.approx(130.6 + 3.0, abs=0.31)


def test_a_look_made_late_by_a_thread_holding_the_gil_is_not_excused_as_a_pause():
    """A neighbour slot in native code holding the GIL delays the watcher as a
    pause would, but the process spends CPU meanwhile: the stuck inference is
    still charged, so its limit is not stretched by each late look."""
    clock, told = FakeClock(), []
    service, device = hanging_service(clock, told)
    running = service.submit(ROWS)
    wait_until_running(service.executor, 1)
    cpu = [0.0]

    def sleep(seconds):  # every look a second late, the GIL held by a busy thread
        clock.now += seconds + 1.0
        cpu[0] += seconds + 1.0

    try:
        assert restart_after_timeout(service, 3.0, sleep, clock, cpu_clock=lambda: cpu[0]) == 1
    finally:
        device.answers.set()
    with pytest.raises(InferenceTimedOut):
        running.result(0)
    restarted_at = next(at for at, status in told if status.restarting)
    assert 103.0 < restarted_at <= 103.0 + 1.3 + 1e-9


class BlockingAdmission(Recorder):
    """Holds the second admission between the executor's lock and its return."""

    def __init__(self):
        super().__init__()
        self.holding, self.go = threading.Event(), threading.Event()

    def admitted(self):
        super().admitted()
        if self.events.count("admitted") == 2:
            self.holding.set()
            self.go.wait(10)


def test_a_request_admitted_as_the_queue_is_abandoned_is_abandoned_too():
    """Else it would queue behind the stuck slot, never answered, and the
    model process would wait for it before its restart for ever."""
    unstick, observer = threading.Event(), BlockingAdmission()
    executor = ModelExecutor(blocking_work(unstick), slots=1, max_queue=2, observer=observer)
    executor.submit(1)
    wait_until_running(executor, 1)
    late = {}
    admitting = threading.Thread(target=lambda: late.update(future=executor.submit(2)))
    admitting.start()
    try:
        assert observer.holding.wait(5)
        executor.refuse_new_work(ModelUnavailable("the model process is restarting"))
        assert executor.abandon_queued(InferenceLost("restarting before running this")) == 1
    finally:
        observer.go.set()
        admitting.join(5)
        unstick.set()
    with pytest.raises(InferenceLost):
        late["future"].result(5)


class FailingObserver:
    """Metrics that fail on every call (a full disk under the multiprocess files)."""

    def __init__(self):
        self.calls = 0

    def _fail(self, *_):
        self.calls += 1
        raise OSError(28, "No space left on device")

    admitted = withdrawn = started = finished = _fail


def test_an_observer_that_fails_changes_no_answer_and_keeps_no_place(caplog):
    """Only counting fails: every request is answered as without it, and the
    places come back; not a 500 for a metric, nor a place lost for good."""
    clock, release, observer = FakeClock(), threading.Event(), FailingObserver()
    executor = ModelExecutor(blocking_work(release), slots=1, max_queue=2, observer=observer, clock=clock)
    stuck = executor.submit(1)
    wait_until_running(executor, 1)
    withdrawn, abandoned = executor.submit(2), executor.submit(3)
    assert withdrawn.cancel()
    clock.now += 6.0
    assert executor.time_out(executor.take_overrunning(5.0), 5.0) == 1
    executor.refuse_new_work(ModelUnavailable("the model process is restarting"))
    assert executor.abandon_queued(InferenceLost("restarting before running this")) == 1
    with pytest.raises(InferenceTimedOut):
        stuck.result(0)
    with pytest.raises(InferenceLost):
        abandoned.result(0)
    release.set()
    wait_until_all_answered(executor)
    assert executor.admitted == 0
    fine = ModelExecutor(lambda p: p, slots=1, max_queue=0, observer=observer)
    assert fine.submit(7).result(5).value == 7
    wait_until_all_answered(fine)
    assert fine.admitted == 0
    # admitted ×4, withdrawn ×2, started ×2, finished ×2; each executor logs its first in full only
    assert observer.calls == 10
    assert caplog.text.count("the executor's observer failed") == 2


def test_a_load_that_fails_answers_the_queue_and_refuses_at_the_door_without_running_a_slot():
    """Requests queued while the model loads, the slots' worth included, are
    answered 503 when the load fails, and later ones refused at once: none
    runs through a slot, or the inference histograms would count empty
    "inferences" of a model that does not exist."""
    load_may_fail = threading.Event()

    def failing_load(_seconds: float) -> None:
        load_may_fail.wait(30)
        raise MemoryError("cannot allocate the model's memory")

    settings = Settings(
        inference_duration_seconds=0, model_load_seconds=1, model_memory_mb=0, model_concurrency=2, max_queue=2
    )
    metrics = ModelMetrics(CollectorRegistry())
    service = InferenceService(settings, metrics, Model(model_from_settings(settings).spec, sleep=failing_load))
    loading = service.start_loading()
    queued = [service.submit(ROWS) for _ in range(4)]
    load_may_fail.set()
    loading.join(10)
    for future in queued:
        with pytest.raises(ModelUnavailable, match="failed to load"):
            future.result(10)
    with pytest.raises(ModelUnavailable, match="failed to load"):
        service.submit(ROWS)
    assert service.status().load_error == "MemoryError: cannot allocate the model's memory"
    for histogram in (metrics.inference_duration, metrics.queue_wait):
        counts = [sample.value for sample in histogram.collect()[0].samples if sample.name.endswith("_count")]
        assert counts == [0.0], histogram
    assert metrics.queue_depth.collect()[0].samples[0].value == 0
    assert metrics.in_flight.collect()[0].samples[0].value == 0
