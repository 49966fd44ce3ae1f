"""How close a simulated run is to one measured on the real loop.

The measured run is the HPA's own view, read every second or so: the replica
count it set (status.desiredReplicas, which it writes to the Deployment) and
the per-pod average it acted on. The simulator is judged on the replicas the
same way at every measured instant, and on when the first scale-up came.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from .figures import replicas_at
from .loop import Sync, Trace

# What "calibrated" means (issue goals): replicas within ±1 for 90 % of the
# measured samples, and the first scale-up within ±15 s.
REPLICA_TOLERANCE = 1
WITHIN_SHARE = 0.90
FIRST_SCALE_UP_TOLERANCE_SECONDS = 15.0


@dataclass(frozen=True)
class Observed:
    """One reading of the real HPA, `at` seconds from the load step."""

    at: float
    replicas: int
    # The per-pod average duration the HPA read (an offset metric's reading
    # with its offset added back, as bench/calibrate.py saves it).
    value: float | None
    # The HPA's second metric (the chart's slot utilization), in runs measured from 2026-12-04 on.
    second: float | None = None
    # The Deployment's status.readyReplicas, in runs from docs/calibration/offset-0-second-run.json on.
    ready: int | None = None


# A measured reading or a simulated sync: both say when, in seconds from the step.
_Timed = TypeVar("_Timed", Observed, Sync)


@dataclass(frozen=True)
class Agreement:
    samples: int
    within: int  # samples whose simulated replicas are within REPLICA_TOLERANCE of the measured
    first_scale_up_measured: float | None
    first_scale_up_simulated: float | None

    @property
    def within_share(self) -> float:
        return self.within / self.samples if self.samples else 0.0

    @property
    def first_scale_up_error(self) -> float | None:
        if self.first_scale_up_measured is None or self.first_scale_up_simulated is None:
            return None
        return self.first_scale_up_simulated - self.first_scale_up_measured

    @property
    def calibrated(self) -> bool:
        error = self.first_scale_up_error
        if error is None:  # neither scaled up: only agreement on that counts
            timing_agrees = self.first_scale_up_measured is None and self.first_scale_up_simulated is None
        else:
            timing_agrees = abs(error) <= FIRST_SCALE_UP_TOLERANCE_SECONDS
        return timing_agrees and self.within_share >= WITHIN_SHARE


def first_scale_up_observed(observed: list[Observed], min_replicas: int) -> float | None:
    return next((o.at for o in observed if o.at >= 0 and o.replicas > min_replicas), None)


def readings_to_first_scale_up(observed: list[Observed], min_replicas: int) -> list[Observed]:
    """The measured readings from the step to the first scale-up, each change once: what the HPA saw at its syncs."""
    first = first_scale_up_observed(observed, min_replicas)
    window = _from_step_to(observed, first)
    return [next(same) for _, same in itertools.groupby(window, key=lambda o: (o.replicas, o.value, o.second))]


def first_scale_up_simulated(trace: Trace, min_replicas: int) -> float | None:
    return next((at for at, replicas in trace.replicas if replicas > min_replicas), None)


def syncs_to_first_scale_up(trace: Trace, min_replicas: int) -> list[Sync]:
    """The simulated syncs from the step to the first scale-up: `readings_to_first_scale_up`'s counterpart."""
    first = first_scale_up_simulated(trace, min_replicas)
    return _from_step_to(trace.syncs, first)


def _from_step_to(timed: list[_Timed], first: float | None) -> list[_Timed]:
    """The items from the step (`at` >= 0) to `first` inclusive; all of them from the step when `first` is None."""
    return [t for t in timed if t.at >= 0 and (first is None or t.at <= first)]


def agreement(observed: list[Observed], trace: Trace, min_replicas: int) -> Agreement:
    """The simulated `trace` against the measured samples from the step (`at` >= 0) on."""
    compared = [o for o in observed if o.at >= 0]
    within = sum(1 for o in compared if abs(replicas_at(trace, o.at) - o.replicas) <= REPLICA_TOLERANCE)
    return Agreement(
        len(compared),
        within,
        first_scale_up_observed(observed, min_replicas),
        first_scale_up_simulated(trace, min_replicas),
    )


def as_trace(observed: list[Observed]) -> Trace:
    """A measured run's replica changes as a simulated run's, so that another
    measured run can be judged against it by `agreement`: how close the real
    loop comes to itself, the floor under any simulator's agreement."""
    changes = [next(same) for _, same in itertools.groupby(observed, key=lambda o: o.replicas)]
    return Trace(replicas=[(o.at, o.replicas) for o in changes])


def seed_ranges(observed: list[Observed], traces: list[Trace]) -> list[tuple[Observed, int, int]]:
    """Each measured reading from the step on, with the fewest and the most
    replicas the seeds' runs had at that instant."""
    ranges = []
    for o in observed:
        if o.at >= 0:
            simulated = [replicas_at(trace, o.at) for trace in traces]
            ranges.append((o, min(simulated), max(simulated)))
    return ranges


def within_seeds(ranges: list[tuple[Observed, int, int]]) -> float:
    """The share of measured readings (`seed_ranges`) whose replicas lie within
    REPLICA_TOLERANCE of the seeds' range. One seed against one real run
    compares two draws of the same random arrivals: with room above the load,
    a step's peak depends on its first bursts (12 to 19 pods over 10 seeds for
    one 5x step), and a slow scale-in carries that offset for minutes. The
    seeds' range asks instead whether the real run is one the simulator could
    have produced."""
    inside = sum(low - REPLICA_TOLERANCE <= o.replicas <= high + REPLICA_TOLERANCE for o, low, high in ranges)
    return inside / len(ranges) if ranges else 0.0


def mid_rank(measured: float, simulated: list[float]) -> float:
    """Where a measured figure falls among the seeds' figures for the same run,
    from 0 (below every seed) to 1 (above every seed): the share of seeds
    below it plus half the share equal to it. Over many runs, a simulator that
    draws what the real loop draws puts the runs anywhere from 0 to 1, 0.5 on
    average; one that overestimates the figure puts them near 0, one that
    underestimates it near 1."""
    if not simulated:
        raise ValueError("a mid-rank needs at least one simulated figure")
    below = sum(figure < measured for figure in simulated)
    equal = sum(figure == measured for figure in simulated)
    return (below + equal / 2) / len(simulated)


def ready_lags(asked: list[tuple[float, int]], ready: list[tuple[float, int]], above: int) -> list[float]:
    """For each count above `above` up to the most the HPA asked for, in
    order: seconds from the HPA first asking for that many pods to that many
    first counting Ready. Both lists are (time, count) from the step on. A
    count never Ready ends the list: the node had no room for it, or a
    scale-in came first. Counts, not pods: a count asked for, given back and
    asked for again before it was Ready waits from the first asking (no run
    so far has done so)."""
    lags = []
    for count in range(above + 1, max((c for _, c in asked), default=above) + 1):
        asked_at = next(t for t, c in asked if c >= count)
        ready_at = next((t for t, c in ready if c >= count and t >= asked_at), None)
        if ready_at is None:
            break
        lags.append(ready_at - asked_at)
    return lags


def observed_ready_lags(observed: list[Observed], min_replicas: int) -> list[float] | None:
    """`ready_lags` of a measured run; None for one measured without the Ready count."""
    since = [o for o in observed if o.at >= 0]
    ready = [(o.at, o.ready) for o in since if o.ready is not None]
    if len(ready) < len(since):
        return None
    return ready_lags([(o.at, o.replicas) for o in since], ready, min_replicas)


def simulated_ready_lags(trace: Trace, min_replicas: int) -> list[float]:
    """`ready_lags` of a simulated run."""
    return ready_lags(trace.replicas, trace.ready, min_replicas)


def seed_ready_medians(traces: Iterable[Trace], min_replicas: int) -> list[float]:
    """Each seed's median `simulated_ready_lags`, leaving out the seeds that added no pod."""
    return [statistics.median(lags) for lags in (simulated_ready_lags(t, min_replicas) for t in traces) if lags]


def back_to_min_observed(observed: list[Observed], min_replicas: int, stopped_at: float) -> float | None:
    """Seconds from `stopped_at` to the first reading from which the HPA stays at
    `min_replicas`; None if the run ends above it."""
    after = [o for o in observed if o.at >= stopped_at]
    if not after or after[-1].replicas != min_replicas:
        return None
    above = [i for i, o in enumerate(after) if o.replicas != min_replicas]
    return after[above[-1] + 1].at - stopped_at if above else 0.0


def share_over(values: Iterable[float | None], target: float) -> float | None:
    """The share of the known `values` over `target`: readings of the HPA, or the simulated syncs."""
    known = [v for v in values if v is not None]
    return sum(v > target for v in known) / len(known) if known else None


def mean_measured_value(observed: list[Observed], start: float, end: float) -> float | None:
    """The measured per-pod average over [start, end), averaged over the readings that had one."""
    values = [o.value for o in observed if start <= o.at < end and o.value is not None]
    return statistics.fmean(values) if values else None


def peak_observed_replicas(observed: list[Observed]) -> int:
    """The most replicas the HPA was read at (as `figures.peak_replicas`)."""
    return max(o.replicas for o in observed)


def median_observed_replicas(observed: list[Observed], start: float, end: float) -> float | None:
    """The median of the measured replicas from `start` to `end`, both included
    (as `figures.median_replicas`); None without a reading there."""
    values = [o.replicas for o in observed if start <= o.at <= end]
    return statistics.median(values) if values else None


def mean_simulated_value(trace: Trace, start: float, end: float) -> float | None:
    """The simulated HPA's per-pod average over [start, end), averaged over its syncs."""
    values = [s.value for s in trace.syncs if start <= s.at < end and s.value is not None]
    return statistics.fmean(values) if values else None


def median_agreement(agreements: list[Agreement]) -> Agreement:
    """The run whose replica agreement is the median of several seeds' (the lower one of an even count)."""
    ranked = sorted(agreements, key=lambda a: a.within_share)
    return ranked[(len(ranked) - 1) // 2]
