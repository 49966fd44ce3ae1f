"""How the harness reads an HPA: its sample for the recorder, and when `kubectl get hpa` shows no `<unknown>`."""

from __future__ import annotations

import itertools
import threading

from localcluster.hpa import HpaRecorder, at_rest, every_metric_known, sample

DURATION, UTILIZATION = "inference_request_duration_seconds_avg", "inference_slot_utilization"


def pods_metric(name: str, target: str) -> dict:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": target}},
    }


def pods_current(name: str, value: str) -> dict:
    return {"type": "Pods", "pods": {"metric": {"name": name}, "current": {"averageValue": value}}}


def hpa(*current: dict) -> dict:
    """The chart's HPA (duration, then slot utilization) with `current` in its status."""
    return {
        "spec": {"metrics": [pods_metric(DURATION, "12"), pods_metric(UTILIZATION, "700m")]},
        "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": list(current)},
    }


def test_every_metric_is_known_only_when_each_has_a_current_value():
    both = hpa(pods_current(DURATION, "10500m"), pods_current(UTILIZATION, "650m"))
    assert every_metric_known(both)
    # The controller leaves an empty entry for a metric it could not read (<unknown>).
    assert not every_metric_known(hpa(pods_current(DURATION, "0"), {"type": ""}))
    assert not every_metric_known(hpa(pods_current(UTILIZATION, "0")))
    assert not every_metric_known(hpa())
    assert not every_metric_known({"spec": {}})


def test_the_loop_is_at_rest_once_each_metric_is_known_and_minreplicas_pods_are_ready():
    known = hpa(pods_current(DURATION, "10"), pods_current(UTILIZATION, "0"))
    known["spec"]["minReplicas"] = 2
    # The HPA raises a new Deployment's one pod to minReplicas at its first sync.
    assert not at_rest(known, {"status": {"readyReplicas": 1}})
    assert not at_rest(known, {"status": {}})
    assert at_rest(known, {"status": {"readyReplicas": 2}})
    assert not at_rest(hpa(pods_current(DURATION, "10")), {"status": {"readyReplicas": 2}})
    # minReplicas left out of the spec is the API's default, 1.
    assert at_rest(hpa(pods_current(DURATION, "10"), pods_current(UTILIZATION, "0")), {"status": {"readyReplicas": 1}})


def test_an_external_metric_is_matched_by_its_own_type_and_name():
    external = {
        "type": "External",
        "external": {"metric": {"name": "x_external"}, "target": {"type": "Value", "value": "12"}},
    }
    reading = {
        "spec": {"metrics": [external]},
        "status": {
            "currentMetrics": [
                {"type": "External", "external": {"metric": {"name": "x_external"}, "current": {"value": "3"}}}
            ]
        },
    }
    assert every_metric_known(reading)
    reading["status"]["currentMetrics"][0]["external"]["metric"]["name"] = "y_external"
    assert not every_metric_known(reading)


def test_the_recorders_sample_reads_each_metric_by_name():
    # The status lists the utilization first: the sample follows the spec's order.
    reading = sample(hpa(pods_current(UTILIZATION, "650m"), pods_current(DURATION, "10500m")), 4.0)
    assert (reading.at, reading.replicas, reading.desired, reading.metric, reading.second) == (4.0, 2, 3, 10.5, 0.65)
    assert (sample(hpa(), 0.0).metric, sample(hpa(), 0.0).second) == (None, None)
    # The duration unreadable, the utilization read: not the duration's value.
    unreadable = sample(hpa({"type": ""}, pods_current(UTILIZATION, "650m")), 0.0)
    assert (unreadable.metric, unreadable.second) == (None, 0.65)
    # An HPA of one metric has no second reading.
    alone = {
        "spec": {"metrics": [pods_metric(DURATION, "12")]},
        "status": {"currentMetrics": [pods_current(DURATION, "9")]},
    }
    assert (sample(alone, 0.0).metric, sample(alone, 0.0).second) == (9.0, None)


def test_a_failed_or_unsampleable_read_adds_nothing_and_keeps_the_pairs_in_step():
    def failing():
        raise TimeoutError("the API server did not answer")

    # Read 1 fails, read 2 is an HPA whose quantity cannot be parsed; the recorder goes on after both.
    script = [lambda: hpa(pods_current(DURATION, "9")), failing, lambda: hpa(pods_current(DURATION, "nine"))]
    reads = itertools.chain(script, itertools.repeat(lambda: hpa(pods_current(DURATION, "10"))))
    counter = itertools.count()
    enough = threading.Event()

    def read_hpa():
        read = next(reads)
        return read()

    def read_deployment():
        n = next(counter)
        if n >= 4:
            enough.set()
        return n

    recorder = HpaRecorder(read_hpa, period=0.001, read_beside=read_deployment)
    recorder.start()
    enough.wait(timeout=30)
    recorder.stop()
    assert recorder.failed_reads == 2
    assert len(recorder.pairs()) >= 2
    assert [(s.metric, deployment) for s, deployment in recorder.pairs()[:2]] == [(9.0, 0), (10.0, 3)]
