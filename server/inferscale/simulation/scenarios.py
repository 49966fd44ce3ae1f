"""The chart's values as a model, and the load scenarios the loop is judged on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from . import load
from .chart_values import ChartValues
from .figures import REFUSAL_WINDOW_SECONDS, Figures, figures, meets_target
from .hpa import HpaSpec
from .loop import Loop, PodModel, Timing


@dataclass(frozen=True)
class Model:
    hpa: HpaSpec
    pod: PodModel
    timing: Timing
    # The most pods the cluster runs at once (its nodes' room); None: unbounded.
    max_running_pods: int | None = None

    @classmethod
    def from_chart_values(cls, values: dict, sync_period: float = 15.0, start_seconds: float = 3.0) -> Model:
        """Raises pydantic's ValidationError, which names each value that is missing or wrong."""
        return cls.from_chart(ChartValues.model_validate(values), sync_period, start_seconds)

    @classmethod
    def from_chart(cls, chart: ChartValues, sync_period: float = 15.0, start_seconds: float = 3.0) -> Model:
        """`sync_period` is kube-controller-manager's flag and `start_seconds`
        the time from a pod's creation to its process answering: neither is a
        value of the chart."""
        pod = PodModel(
            slots=chart.server.modelConcurrency,
            max_queue=chart.server.maxQueue,
            inference_seconds=chart.server.inferenceDurationSeconds,
            start_seconds=start_seconds,
            model_load_seconds=chart.server.modelLoadSeconds,
            startup_probe_period=chart.probes.startup.periodSeconds,
        )
        timing = Timing(
            scrape_interval=chart.serviceMonitor.interval,
            rate_window=chart.autoscaling.rateWindow,
            sync_period=sync_period,
        )
        hpa = chart.autoscaling.spec()
        utilization = chart.autoscaling.slotUtilization
        if utilization is not None and utilization.enabled:
            # The chart's target is a share of a pod's slots; the loop counts
            # requests held. Multiplied as decimals: 0.1 x 3 must be 300m, as
            # the HPA reads 0.1 against shares, not the float 0.30000000000000004.
            held_target = float(Decimal(repr(utilization.target)) * pod.slots)
            hpa = replace(hpa, held_target=held_target)
        return cls(hpa, pod, timing)

    @property
    def pod_capacity(self) -> float:
        """Requests/s one pod answers without queueing."""
        return self.pod.slots / self.pod.inference_seconds


@dataclass(frozen=True)
class Scenario:
    shape: load.Shape
    seconds: float
    change_at: float  # when the load changes: the clock of "back under target"
    steady_from: float  # the span the steady figures are taken over
    # Refusals are counted from change_at to here: REFUSAL_WINDOW_SECONDS after
    # the load stops changing (a ramp's top), the whole run for the sine.
    refusals_until: float

    @property
    def refusals_span(self) -> str:
        return f"{self.change_at:g}-{min(self.refusals_until, self.seconds):g} s"


def scenario(name: str, capacity: float, times: float, hours: float) -> Scenario:
    """`times` × one pod's `capacity`; steady figures over the last half of the run."""
    seconds = hours * 3600
    high = times * capacity
    after = REFUSAL_WINDOW_SECONDS
    if name == "step":
        return Scenario(load.step(0.0, high, 60.0), seconds, 60.0, seconds / 2, 60.0 + after)
    if name == "ramp":
        return Scenario(load.ramp(0.0, high, 60.0, 1800.0), seconds, 60.0, max(seconds / 2, 1860.0), 1860.0 + after)
    if name == "spike":
        return Scenario(load.spike(capacity, high, 600.0, 120.0), seconds, 600.0, seconds / 2, 720.0 + after)
    if name == "sine":
        return Scenario(load.sine(0.1 * high, high, seconds), seconds, 0.0, 0.0, seconds)
    if name == "stop":
        return Scenario(load.stop(high, seconds / 2), seconds, seconds / 2, seconds / 2, seconds / 2 + after)
    raise ValueError(f"unknown scenario {name!r}: step, ramp, spike, sine or stop")


def run(model: Model, case: Scenario, arrivals: str, seed: int = 1) -> Figures:
    trace = Loop(model.hpa, model.pod, model.timing, arrivals, seed, max_running_pods=model.max_running_pods).run(
        case.shape, case.seconds
    )
    return figures(
        trace,
        model.hpa.target,
        model.hpa.min_replicas,
        case.change_at,
        case.steady_from,
        case.seconds,
        case.refusals_until,
    )


def fewest_fixed(model: Model, case: Scenario, arrivals: str, seed: int = 1, limit: int = 200) -> int | None:
    """The fewest always-on pods whose requests average the target or less over
    the whole run (a spike's included), with at most 1 % refused; None if not
    even `limit` do."""
    low, high = 1, limit
    if not fixed_meets_target(model, case, arrivals, seed, high):
        return None
    while low < high:
        middle = (low + high) // 2
        if fixed_meets_target(model, case, arrivals, seed, middle):
            high = middle
        else:
            low = middle + 1
    return low


def fixed_meets_target(model: Model, case: Scenario, arrivals: str, seed: int, replicas: int) -> bool:
    trace = Loop(None, model.pod, model.timing, arrivals, seed, fixed_replicas=replicas).run(case.shape, case.seconds)
    return meets_target(trace, model.hpa.target, since=0.0)
