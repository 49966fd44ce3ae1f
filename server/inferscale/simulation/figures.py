"""What a run says about the loop: how fast, how many pods, how many refused, how steady."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from .loop import Trace

HOLD_SECONDS = 300.0


@dataclass(frozen=True)
class Figures:
    # From the load change until the HPA's per-pod average stays at or under
    # the target for HOLD_SECONDS; None when it never does.
    back_under_target_seconds: float | None
    # From the load change until spec.replicas is at minReplicas for good
    # (after load stops); None when it is not at the end of the run.
    back_to_min_seconds: float | None
    peak_replicas: int
    steady_replicas: float  # median spec.replicas over the steady span
    refused_percent: float
    changes_per_hour: float  # replica changes over the steady span
    pod_minutes: float  # spec.replicas integrated over the run
    mean_seconds: float  # mean duration of the answered requests


def replicas_at(trace: Trace, t: float) -> int:
    current = trace.replicas[0][1]
    for at, replicas in trace.replicas:
        if at > t:
            break
        current = replicas
    return current


def pod_minutes(trace: Trace, end: float) -> float:
    # The last point only ends the last span: its replica count is never read.
    points = [*trace.replicas, (end, 0)]
    return sum((b[0] - a[0]) * a[1] for a, b in itertools.pairwise(points) if a[0] < end) / 60


def back_under_target(trace: Trace, target: float, change_at: float) -> float | None:
    return back_under([(s.at, s.value) for s in trace.syncs], target, change_at)


def back_under(readings: list[tuple[float, float | None]], target: float, change_at: float) -> float | None:
    """From `change_at` to the first (time, value) reading of the HPA from which
    the value stays at or under `target` for HOLD_SECONDS: one reading's dip
    under it is not "back". Simulated syncs and measured readings alike."""
    known = [(at, value) for at, value in readings if at >= change_at and value is not None]
    for i, (start, _) in enumerate(known):
        if known[-1][0] < start + HOLD_SECONDS:
            return None  # too little run left to tell
        if all(value <= target for _, value in _until(known[i:], start + HOLD_SECONDS)):
            return start - change_at
    return None


def back_to(trace: Trace, replicas: int, change_at: float) -> float | None:
    if trace.replicas[-1][1] != replicas:
        return None
    return max(trace.replicas[-1][0] - change_at, 0.0)


def figures(
    trace: Trace, target: float, min_replicas: int, change_at: float, steady_from: float, end: float
) -> Figures:
    arrivals = len(trace.answered) + len(trace.refused)
    steady_changes = [at for at, _ in trace.replicas[1:] if steady_from <= at < end]
    samples = [replicas_at(trace, steady_from + i * 15.0) for i in range(int((end - steady_from) // 15.0) + 1)]
    return Figures(
        back_under_target_seconds=back_under_target(trace, target, change_at),
        back_to_min_seconds=back_to(trace, min_replicas, change_at),
        peak_replicas=max(r for _, r in trace.replicas),
        steady_replicas=statistics.median(samples),
        refused_percent=100 * len(trace.refused) / arrivals if arrivals else 0.0,
        changes_per_hour=len(steady_changes) * 3600 / (end - steady_from),
        pod_minutes=pod_minutes(trace, end),
        mean_seconds=statistics.fmean(d for _, d in trace.answered) if trace.answered else 0.0,
    )


def meets_target(trace: Trace, target: float, since: float, max_refused_percent: float = 1.0) -> bool:
    """Requests arriving from `since` took `target` s or less on average, and few were refused."""
    durations = [d for at, d in trace.answered if at >= since]
    refused = sum(1 for at in trace.refused if at >= since)
    total = len(durations) + refused
    if not total:
        return True
    return statistics.fmean(durations or [0.0]) <= target and 100 * refused / total <= max_refused_percent


def _until(readings: list[tuple[float, float]], horizon: float):
    """The time-ordered `readings` up to and including `horizon`."""
    return itertools.takewhile(lambda reading: reading[0] <= horizon, readings)
