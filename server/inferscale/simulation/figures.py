"""What a run says about the loop: how fast, how many pods, how many refused, how steady."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from .loop import Trace

HOLD_SECONDS = 300.0
# Refusals are counted from the load change to this long after the load stops
# changing (a step's, the end of a ramp's climb): a step's all come in its
# first minutes, and a whole run's arrivals would dilute them with the length
# of the run.
REFUSAL_WINDOW_SECONDS = 600.0


@dataclass(frozen=True)
class Figures:
    # From the load change to the reading from which the HPA's per-pod average,
    # once over the target, stays at or under it for HOLD_SECONDS; None when
    # it never does, or never went over (never_over_target).
    back_under_target_seconds: float | None
    never_over_target: bool
    # From the load change until spec.replicas is at minReplicas for good
    # (after load stops); None when it is not at the end of the run.
    back_to_min_seconds: float | None
    peak_replicas: int
    steady_replicas: float  # median spec.replicas over the steady span
    refused_percent: float  # of the arrivals from the change to the scenario's refusals_until
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


def peak_replicas(trace: Trace) -> int:
    return max(r for _, r in trace.replicas)


def pod_minutes(trace: Trace, end: float) -> float:
    # The last point only ends the last span: its replica count is never read.
    points = [*trace.replicas, (end, 0)]
    return sum((b[0] - a[0]) * a[1] for a, b in itertools.pairwise(points) if a[0] < end) / 60


def readings(trace: Trace) -> list[tuple[float, float | None]]:
    return [(s.at, s.value) for s in trace.syncs]


def back_under_target(trace: Trace, target: float, change_at: float) -> float | None:
    return back_under(readings(trace), target, change_at)


def back_under(readings: list[tuple[float, float | None]], target: float, change_at: float) -> float | None:
    """Issue 10's "time until the per-pod average is back under target", from
    (time, value) readings of the HPA, simulated syncs and measured alike:
    from `change_at` to the first reading under `target` that follows one over
    it and starts HOLD_SECONDS at or under it (one reading's dip under it is
    not "back"). None when the average never went over the target after the
    change (`never_over`: nothing to come back from) or never came back."""
    known = _known(readings, change_at)
    for (_, before), (start, value) in itertools.pairwise(known):
        if before <= target or value > target:
            continue
        if known[-1][0] < start + HOLD_SECONDS:
            return None  # too little run left to tell
        if all(later <= target for _, later in _until(known, start, start + HOLD_SECONDS)):
            return start - change_at
    return None


def never_over(readings: list[tuple[float, float | None]], target: float, change_at: float) -> bool:
    """The HPA read values after the change, and none over the target (no readings: not known, so False)."""
    known = _known(readings, change_at)
    return bool(known) and all(value <= target for _, value in known)


def back_under_text(readings: list[tuple[float, float | None]], target: float, change_at: float, unit: str = "") -> str:
    """back_under as a table shows it: seconds; "never over"; "no readings" (an
    HPA that never read a value); under only for the run's last seconds, too
    few to call it back; or "never"."""
    known = _known(readings, change_at)
    if not known:
        return "no readings"
    if all(value <= target for _, value in known):  # never_over, on the readings already taken
        return "never over"
    back = back_under(readings, target, change_at)
    if back is not None:
        return f"{back:.0f}{unit}"
    if known[-1][1] <= target:
        last_over = max(at for at, value in known if value > target)
        return f"under only for the run's last {known[-1][0] - last_over:.0f}{unit} (< {HOLD_SECONDS:g}{unit} hold)"
    return "never"


def refused_percent(trace: Trace, change_at: float, until: float) -> float:
    """Refused share of the requests arriving from `change_at` to `until`."""
    refused = sum(1 for at in trace.refused if change_at <= at < until)
    answered = sum(1 for at, _ in trace.answered if change_at <= at < until)
    return 100 * refused / (refused + answered) if refused + answered else 0.0


def back_to(trace: Trace, replicas: int, change_at: float) -> float | None:
    if trace.replicas[-1][1] != replicas:
        return None
    return max(trace.replicas[-1][0] - change_at, 0.0)


def median_replicas(trace: Trace, start: float, end: float) -> float:
    """The median of the replicas read every 15 s (an HPA sync) from `start` to `end`, both included."""
    return statistics.median(replicas_at(trace, start + i * 15.0) for i in range(int((end - start) // 15.0) + 1))


def figures(
    trace: Trace,
    target: float,
    min_replicas: int,
    change_at: float,
    steady_from: float,
    end: float,
    refusals_until: float,
) -> Figures:
    steady_changes = [at for at, _ in trace.replicas[1:] if steady_from <= at < end]
    return Figures(
        back_under_target_seconds=back_under_target(trace, target, change_at),
        never_over_target=never_over(readings(trace), target, change_at),
        back_to_min_seconds=back_to(trace, min_replicas, change_at),
        peak_replicas=peak_replicas(trace),
        steady_replicas=median_replicas(trace, steady_from, end),
        refused_percent=refused_percent(trace, change_at, refusals_until),
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


def _known(readings: list[tuple[float, float | None]], change_at: float) -> list[tuple[float, float]]:
    return [(at, value) for at, value in readings if at >= change_at and value is not None]


def _until(readings: list[tuple[float, float]], start: float, horizon: float):
    """The time-ordered `readings` from `start` up to and including `horizon`."""
    return (reading for reading in readings if start <= reading[0] <= horizon)
