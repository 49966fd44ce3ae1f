"""Reading the HorizontalPodAutoscaler's view: replicas, desired replicas, current metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from inferscale.doctor.hpa import current_values, spec_metrics


@dataclass(frozen=True)
class HpaSample:
    at: float  # seconds since the recorder started
    replicas: int
    desired: int
    metric: float | None  # the current value of the HPA's first metric; None while <unknown>
    second: float | None = None  # its second metric's, likewise; None for an HPA of one


def _number(quantity: str | None) -> float | None:
    return float(parse_quantity(quantity)) if quantity is not None else None


def sample(hpa: dict, at: float) -> HpaSample:
    status = hpa.get("status", {})
    # The chart lists the duration first; a second Pods metric (slot utilization)
    # follows it. Matched by type and name: an unreadable metric's entry is empty.
    known = current_values(hpa)
    values = [_number(known.get(key)) for key in spec_metrics(hpa)[:2]]
    first, second = values + [None] * (2 - len(values))
    return HpaSample(at, status.get("currentReplicas", 0), status.get("desiredReplicas", 0), first, second)


def every_metric_known(hpa: dict) -> bool:
    """Each metric of the HPA's spec has a current value: `kubectl get hpa` shows no `<unknown>`."""
    wanted, known = spec_metrics(hpa), current_values(hpa)
    return bool(wanted) and all(key in known for key in wanted)


def ready_replicas(deployment: dict) -> int:
    return deployment.get("status", {}).get("readyReplicas", 0)  # absent while no pod is Ready


def at_rest(hpa: dict, deployment: dict) -> bool:
    """The loop is ready for load: each of the HPA's metrics has a value, and
    its minReplicas pods are Ready. The Deployment starts with one pod, which the
    HPA raises to minReplicas at its first sync."""
    return every_metric_known(hpa) and ready_replicas(deployment) >= hpa["spec"].get("minReplicas", 1)


class HpaRecorder(threading.Thread):
    """Samples an HPA every `period` seconds until stopped. With `read_beside`
    (the Deployment, say), read just before each HPA, each sample is kept with
    its answer (`pairs`): a read of either that fails, or an HPA that cannot be
    sampled, keeps neither, so no pairing slips and no long run is lost to one
    bad read."""

    def __init__(self, read_hpa, period: float = 2.0, read_beside=None):
        super().__init__(daemon=True)
        self._read_hpa = read_hpa
        self._read_beside = read_beside
        self._period = period
        self._stop_event = threading.Event()
        self.started = time.monotonic()
        self._read: list[tuple[HpaSample, Any]] = []
        self.failed_reads = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                other = self._read_beside() if self._read_beside else None
                taken = sample(self._read_hpa(), time.monotonic() - self.started)
            except Exception:  # noqa: BLE001 - an API server restarting, a timeout: a gap, not the end
                self.failed_reads += 1
            else:
                self._read.append((taken, other))
            self._stop_event.wait(self._period)

    def stop(self) -> list[HpaSample]:
        self._stop_event.set()
        self.join()
        return self.samples

    @property
    def samples(self) -> list[HpaSample]:
        return [taken for taken, _ in self._read]

    def pairs(self) -> list[tuple[HpaSample, Any]]:
        """Each sample with what `read_beside` answered just before it (None without one)."""
        return list(self._read)

    def elapsed(self) -> float:
        return time.monotonic() - self.started
