"""Reading the HorizontalPodAutoscaler's view: replicas, desired replicas, current metric."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class HpaSample:
    at: float  # seconds since the recorder started
    replicas: int
    desired: int
    metric: float | None  # the HPA's first metric (a Pods one) current average; None while <unknown>


def quantity(text: str) -> float:
    """A Kubernetes quantity such as `1500m` or `2` as a float."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def sample(hpa: dict, at: float) -> HpaSample:
    status = hpa.get("status", {})
    # The chart lists the duration first; a second Pods metric (slot utilization)
    # follows it. Matched by name: an unreadable metric's entry is empty.
    first = next(iter(hpa.get("spec", {}).get("metrics") or []), None)
    metric = next(
        (
            quantity(current["pods"]["current"]["averageValue"])
            for current in status.get("currentMetrics") or []
            if first and current.get("type") == "Pods" and _metric_key(current) == _metric_key(first)
        ),
        None,
    )
    return HpaSample(at, status.get("currentReplicas", 0), status.get("desiredReplicas", 0), metric)


def every_metric_known(hpa: dict) -> bool:
    """Each metric of the HPA's spec has a current value: `kubectl get hpa`
    shows no `<unknown>`. A metric the controller could not read has an empty
    entry in currentMetrics (`computeReplicasForMetrics`), or none yet."""
    wanted = [_metric_key(metric) for metric in hpa.get("spec", {}).get("metrics") or []]
    known = {
        _metric_key(current)
        for current in hpa.get("status", {}).get("currentMetrics") or []
        if current.get("type") and current[current["type"].lower()].get("current")
    }
    return bool(wanted) and all(key in known for key in wanted)


def _metric_key(metric: dict) -> tuple[str, str | None]:
    """(type, metric name) of a spec.metrics or status.currentMetrics entry of type Pods or External."""
    source = metric.get(metric.get("type", "").lower()) or {}
    return metric.get("type", ""), source.get("metric", {}).get("name")


class HpaRecorder(threading.Thread):
    """Samples an HPA every `period` seconds until stopped."""

    def __init__(self, read_hpa, period: float = 2.0):
        super().__init__(daemon=True)
        self._read_hpa = read_hpa
        self._period = period
        self._stop_event = threading.Event()
        self.started = time.monotonic()
        self.samples: list[HpaSample] = []
        self.failed_reads = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                hpa = self._read_hpa()
            except Exception:  # noqa: BLE001 - an API server restarting, a timeout: a gap, not the end
                self.failed_reads += 1
            else:
                self.samples.append(sample(hpa, time.monotonic() - self.started))
            self._stop_event.wait(self._period)

    def stop(self) -> list[HpaSample]:
        self._stop_event.set()
        self.join()
        return self.samples

    def elapsed(self) -> float:
        return time.monotonic() - self.started
