"""The HorizontalPodAutoscaler controller's decisions for one Pods metric.

This follows kube-controller-manager v1.33 (`pkg/controller/podautoscaler`),
function by function, because the loop's behaviour near the target lives in
its details:

- `Tolerances` is the band of usage ratios left alone, each direction's
  from its `behavior` rules or the controller's flag (`tolerancesForHpa`).
- `replicas_for_metric` is `calcPlainMetricReplicas` with `groupPods`
  (replica_calculator.go): Pending pods are "unready" and ignored, or count
  as 0 on a scale-up; a Running pod without a value is "missing" and counts
  as exactly the target on a scale-down and as 0 on a scale-up; a result
  that would turn the direction round keeps the current count. Values are
  milli-units and the average is an integer division, as
  `GetMetricUsageRatio` computes it: a target as `Quantity.MilliValue()`
  reads it, rounded up, and a value as prometheus-adapter serves it,
  `int64(value * 1000)`, truncated.
- `Controller.sync` is `reconcileAutoscaler` (horizontal.go): outside
  [minReplicas, maxReplicas] it goes to the bound without reading metrics;
  with no value at all (`ScalingActive=False`) it keeps the count and
  records nothing; otherwise `normalizeDesiredReplicasWithBehaviors`, or
  `normalizeDesiredReplicas` for an HPA without `behavior`.
- `_stabilize` is `stabilizeRecommendationWithBehaviors`: the current count
  raised to the lowest recommendation of the scale-up window and lowered to
  the highest of the scale-down window.
- `_rate_limit` is `convertDesiredReplicasWithBehaviorRate` with
  `calculateScaleUpLimitWithScalingRules` and
  `calculateScaleDownLimitWithBehaviors`: each policy's limit counts from
  the replicas at the start of its period (events younger than the period
  undone), `Percent` rounds up on the way up and truncates on the way down,
  and `selectPolicy` picks the largest change (Max) or the smallest (Min).
- `_normalize_without_behavior` is `normalizeDesiredReplicas` with
  `stabilizeRecommendation` and `convertDesiredReplicasWithRules`: the
  highest recommendation of the controller's downscale window, then at most
  max(2 × current, 4) replicas, with no period at all.

The controller keeps recommendations and scale events in memory; so does
this class, one instance per HPA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal


class NoMetrics(Exception):
    """No pod has a value: the HPA reports ScalingActive=False and keeps its count."""


@dataclass(frozen=True)
class ScalingPolicy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_seconds: int


# kube-controller-manager's --horizontal-pod-autoscaler-tolerance, for a
# direction whose rules set none.
DEFAULT_TOLERANCE = 0.1


@dataclass(frozen=True)
class Tolerances:
    """Usage ratios too close to 1 to act on, each direction its own (replica_calculator.go)."""

    down: float = DEFAULT_TOLERANCE
    up: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        """Tolerances.isWithin."""
        return 1 - self.down <= ratio <= 1 + self.up


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: int
    select_policy: str  # "Max", "Min" or "Disabled"
    policies: tuple[ScalingPolicy, ...]
    # `tolerance` of the rules (HPAConfigurableTolerance: alpha in v1.33, on
    # by default from v1.35); `tolerancesForHpa` in horizontal.go.
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)


# kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization.
DOWNSCALE_STABILIZATION_SECONDS = 300

# What the API server fills in for rules a `behavior` leaves unset
# (pkg/apis/autoscaling/v2/defaults.go); a scale-down window left unset is
# the controller's flag.
DEFAULT_SCALE_UP = ScalingRules(0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = ScalingRules(DOWNSCALE_STABILIZATION_SECONDS, "Max", (ScalingPolicy("Percent", 100, 15),))

# horizontal.go's scaleUpLimitFactor and scaleUpLimitMinimum: the most a sync
# may add when the HPA has no `behavior`.
LEGACY_SCALE_UP_FACTOR, LEGACY_SCALE_UP_MINIMUM = 2, 4


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    target: float  # the Pods metric's averageValue
    scale_up: ScalingRules
    scale_down: ScalingRules
    # A second Pods metric, the requests a pod holds (running and queued)
    # averaged over the window, and its target per pod; None: duration only.
    held_target: float | None = None
    # Seconds the adapter's query would take off each pod's average before the
    # HPA reads it against `target - duration_offset`: the same point to hold,
    # a steeper proposal either side of it. 0: the chart's query.
    duration_offset: float = 0.0
    # False: the HPA has no `behavior` and the controller takes its older
    # path. Of the rules above (then the defaults) it reads only the
    # tolerance, which is the controller's flag.
    has_behavior: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.duration_offset < self.target:
            raise ValueError(
                f"a {self.target:g} s target with a duration_offset of {self.duration_offset:g} s: "
                "the offset must be from 0 up to below the target"
            )

    @property
    def tolerances(self) -> Tolerances:
        return Tolerances(down=self.scale_down.tolerance, up=self.scale_up.tolerance)


@dataclass(frozen=True)
class PodView:
    """A pod as the controller's lister and the metrics API show it."""

    name: str
    running: bool  # False: phase Pending
    value: float | None  # the metric's value; None when the metrics API has none for it
    held: float | None = None  # the second metric's value (HpaSpec.held_target), likewise


@dataclass(frozen=True)
class Decision:
    desired: int
    value: float | None  # the current average the HPA reports; None while <unknown>
    scaling_active: bool
    held: float | None = None  # the second metric's average (HpaSpec.held_target), likewise


def target_milli(target: float) -> int:
    """Quantity.MilliValue(), which rounds up: 0.0001 is 1m, not 0."""
    # The chart renders the target with toString, the shortest decimal that
    # reads back as the float, as repr writes it; Decimal keeps it exact.
    return math.ceil(Decimal(repr(target)) * 1000)


def value_milli(value: float) -> int:
    """The adapter's NewMilliQuantity(int64(value * 1000)): truncated."""
    return int(value * 1000)


def _usage_ratio(values: dict[str, int], target: int) -> tuple[float, int]:
    average = sum(values.values()) // len(values)
    return average / target, average


def replicas_for_metric(current: int, pods: list[PodView], target: float, tolerances: Tolerances) -> tuple[int, float]:
    """The proposal for one Pods metric and the average it read (calcPlainMetricReplicas)."""
    if not pods:
        raise NoMetrics("no pods returned by selector")
    milli_target = target_milli(target)
    unready = {p.name for p in pods if not p.running}
    missing = {p.name for p in pods if p.running and p.value is None}
    values = {p.name: value_milli(p.value) for p in pods if p.running and p.value is not None}
    if not values:
        raise NoMetrics("did not receive metrics for targeted pods")
    ratio, average = _usage_ratio(values, milli_target)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        return (current if tolerances.within(ratio) else math.ceil(ratio * len(values))), average / 1000
    if ratio < 1.0:
        values.update({name: milli_target for name in missing})
    elif ratio > 1.0:
        values.update({name: 0 for name in missing})
    if scale_up_with_unready:
        values.update({name: 0 for name in unready})
    new_ratio, _ = _usage_ratio(values, milli_target)
    if tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current, average / 1000
    proposal = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
        return current, average / 1000
    return proposal, average / 1000


def _shifted(pods: list[PodView], offset: float) -> list[PodView]:
    """The pods as the HPA reads them through a query that takes `offset` off each value."""
    if not offset:
        return pods
    return [replace(p, value=None if p.value is None else p.value - offset) for p in pods]


@dataclass
class Controller:
    """One HPA's controller state: recent recommendations and scale events."""

    spec: HpaSpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)
    scale_downs: list[tuple[float, int]] = field(default_factory=list)

    def sync(self, now: float, current: int, pods: list[PodView]) -> Decision:
        """One reconcile at time `now` (seconds) of a target at `current` replicas."""
        spec = self.spec
        if not self.recommendations:
            self.recommendations.append((now, current))  # recordInitialRecommendation
        if current == 0 and spec.min_replicas != 0:
            return Decision(0, None, False)
        if current > spec.max_replicas:
            return self._scaled(now, current, spec.max_replicas, None)
        if current < spec.min_replicas:
            return self._scaled(now, current, spec.min_replicas, None)
        try:
            proposal, value, held = self._proposal(current, pods)
        except NoMetrics:
            return Decision(current, None, False)
        if not spec.has_behavior:
            return self._scaled(now, current, self._normalize_without_behavior(now, current, proposal), value, held)
        stabilized = self._stabilize(now, current, proposal)
        return self._scaled(now, current, self._rate_limit(now, current, stabilized), value, held)

    def _proposal(self, current: int, pods: list[PodView]) -> tuple[int, float | None, float | None]:
        """computeReplicasForMetrics: the largest metric's proposal. A metric
        without values does not stop a scale-up the others ask for, but it does
        stop a scale-in, and with none valid there is no proposal."""
        spec = self.spec
        metrics = [(spec.target - spec.duration_offset, _shifted(pods, spec.duration_offset))]
        if spec.held_target is not None:
            metrics.append((spec.held_target, [PodView(p.name, p.running, p.held) for p in pods]))
        proposals, invalid, tolerances = [], 0, spec.tolerances
        averages: list[float | None] = [None, None]
        for index, (target, views) in enumerate(metrics):
            try:
                proposal, averages[index] = replicas_for_metric(current, views, target, tolerances)
            except NoMetrics:
                invalid += 1
                continue
            proposals.append(proposal)
        if invalid == len(metrics) or (invalid and max(proposals) < current):
            raise NoMetrics("a metric has no values")
        duration = None if averages[0] is None else averages[0] + spec.duration_offset
        return max(proposals), duration, averages[1]

    def _scaled(
        self, now: float, current: int, desired: int, value: float | None, held: float | None = None
    ) -> Decision:
        if desired > current:
            self._prune(self.scale_ups, now, self.spec.scale_up.longest_period)
            self.scale_ups.append((now, desired - current))
        elif desired < current:
            self._prune(self.scale_downs, now, self.spec.scale_down.longest_period)
            self.scale_downs.append((now, current - desired))
        return Decision(desired, value, True, held)

    def _stabilize(self, now: float, current: int, proposal: int) -> int:
        up_cutoff = now - self.spec.scale_up.stabilization_window_seconds
        down_cutoff = now - self.spec.scale_down.stabilization_window_seconds
        up, down = proposal, proposal
        for at, recommendation in self.recommendations:
            if at > up_cutoff:
                up = min(up, recommendation)
            if at > down_cutoff:
                down = max(down, recommendation)
        self.recommendations = [(at, r) for at, r in self.recommendations if at >= min(up_cutoff, down_cutoff)]
        self.recommendations.append((now, proposal))
        return min(max(current, up), down)

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        spec = self.spec
        if desired > current:
            limit = max(self._limit(now, current, spec.scale_up, up=True), current)
            return min(desired, spec.max_replicas, limit)
        if desired < current:
            limit = min(self._limit(now, current, spec.scale_down, up=False), current)
            return max(desired, spec.min_replicas, limit)
        return desired

    def _normalize_without_behavior(self, now: float, current: int, proposal: int) -> int:
        cutoff = now - DOWNSCALE_STABILIZATION_SECONDS
        self.recommendations = [(at, r) for at, r in self.recommendations if at >= cutoff]
        stabilized = max([proposal] + [r for _, r in self.recommendations])
        self.recommendations.append((now, proposal))
        highest = min(self.spec.max_replicas, max(LEGACY_SCALE_UP_FACTOR * current, LEGACY_SCALE_UP_MINIMUM))
        if stabilized < self.spec.min_replicas:
            return self.spec.min_replicas
        return min(stabilized, highest)

    def _limit(self, now: float, current: int, rules: ScalingRules, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = (
                current
                - self._change(self.scale_ups, now, policy.period_seconds)
                + self._change(self.scale_downs, now, policy.period_seconds)
            )
            if policy.kind == "Pods":
                proposals.append(start + policy.value if up else start - policy.value)
            elif up:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
            else:
                proposals.append(int(start * (1 - policy.value / 100)))
        # The largest change (Max) is the highest limit up and the lowest down.
        largest_change = rules.select_policy != "Min"
        return (max if largest_change == up else min)(proposals)

    @staticmethod
    def _change(events: list[tuple[float, int]], now: float, period: int) -> int:
        return sum(change for at, change in events if at > now - period)

    @staticmethod
    def _prune(events: list[tuple[float, int]], now: float, period: int) -> None:
        events[:] = [(at, change) for at, change in events if at >= now - period]
