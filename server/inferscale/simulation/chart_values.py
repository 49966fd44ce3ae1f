"""The chart's values that the simulated loop reads, checked as the loop needs them.

The simulator takes a copy of the chart's values.yaml. A file that lacks a
value or holds the wrong kind of thing fails here with the value's path
(`server.modelConcurrency`), so `inferscale simulate` names what to fix.
The chart's own schema, which helm applies to every value, is checked
before this (chart_schema).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, HpaSpec, ScalingPolicy, ScalingRules

DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def seconds(duration: str) -> float:
    """A Prometheus duration (`1m30s`) in seconds."""
    if not isinstance(duration, str):
        raise ValueError(f"not a duration: {duration!r} (write it as 15s, 1m30s)")
    parts = DURATION_PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)


def merged(base: dict, override: dict) -> dict:
    """`override` laid over `base`, nested dicts merged key by key (as helm merges its -f files)."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def coalesced(chart: dict, user: dict) -> dict:
    """The user's values over the chart's, as helm installs them: nested
    tables merged, and a key the user sets to null deleted from the chart's
    (chartutil/coalesce.go), which is how a user drops a default block."""
    result = dict(user)
    for key, default in chart.items():
        if key not in user:
            result[key] = default
        elif user[key] is None:
            del result[key]
        elif isinstance(user[key], dict) and isinstance(default, dict):
            result[key] = coalesced(default, user[key])
    return result


def _some_time(duration: str) -> float:
    # A scrape every 0 s would come round again at the same instant, for ever.
    elapsed = seconds(duration)
    if elapsed <= 0:
        raise ValueError(f"{duration!r} is no time at all: it must be above 0")
    return elapsed


# A Prometheus duration in the file, seconds once read.
Duration = Annotated[float, BeforeValidator(_some_time)]


def _unquoted(value: object) -> object:
    # helm passes "4" and true on as they are, and the API server's int32
    # fields refuse both; a number it passes on, 4.0 as 4.
    if isinstance(value, str | bool):
        raise ValueError(
            f"{json.dumps(value)} is not a number: autoscaling/v2 takes an integer here, "
            "and the API server refuses the HPA"
        )
    return value


# An integer field of the HPA's `behavior`, which the chart's schema leaves unchecked.
ApiInt = Annotated[int, BeforeValidator(_unquoted)]


class _Values(BaseModel):
    # The rest of the chart's values are the chart's business, not the loop's.
    # An infinite target or time passes the schema (a number) but not the API
    # server, and no arithmetic of the loop's.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class Server(_Values):
    modelConcurrency: PositiveInt
    maxQueue: NonNegativeInt
    # Above 0: a pod's capacity is slots / inference time.
    inferenceDurationSeconds: PositiveFloat
    modelLoadSeconds: NonNegativeFloat


class Probe(_Values):
    periodSeconds: PositiveInt


class Probes(_Values):
    # The kubelet probes readiness at once when the startup probe first
    # succeeds, so the startup probe's period sets when a new pod turns Ready.
    startup: Probe


class ServiceMonitor(_Values):
    # `enabled: null` deletes the key, as in helm, and the template's `if` then
    # renders no ServiceMonitor: absent is false.
    enabled: bool = False
    interval: Duration


class PrometheusRule(_Values):
    # As serviceMonitor.enabled: absent is false.
    enabled: bool = False


class SlotUtilization(_Values):
    enabled: bool
    target: PositiveFloat


class Policy(_Values):
    type: Literal["Pods", "Percent"]
    value: Annotated[ApiInt, Field(gt=0)]
    # The API server's bounds (autoscaling/validation: MaxPeriodSeconds).
    periodSeconds: Annotated[ApiInt, Field(gt=0, le=1800)]


class Rules(_Values):
    """A direction's rules; what is left unset the API server fills in."""

    stabilizationWindowSeconds: Annotated[ApiInt, Field(ge=0, le=3600)] | None = None
    selectPolicy: Literal["Max", "Min", "Disabled"] | None = None
    policies: Annotated[list[Policy], Field(min_length=1)] | None = None
    tolerance: NonNegativeFloat | None = None

    def rules(self, defaults: ScalingRules) -> ScalingRules:
        """copyHPAScalingRules: each field that is set, over `defaults`."""
        return ScalingRules(
            _given(self.stabilizationWindowSeconds, defaults.stabilization_window_seconds),
            _given(self.selectPolicy, defaults.select_policy),
            _given(_policies(self.policies), defaults.policies),
            _given(self.tolerance, defaults.tolerance),
        )


_T = TypeVar("_T")


def _given(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _policies(policies: list[Policy] | None) -> tuple[ScalingPolicy, ...] | None:
    return None if policies is None else tuple(ScalingPolicy(p.type, p.value, p.periodSeconds) for p in policies)


class Behavior(_Values):
    scaleUp: Rules = Rules()
    scaleDown: Rules = Rules()


class Metric(_Values):
    type: str

    @field_validator("type")
    @classmethod
    def _per_pod(cls, kind: str) -> str:
        if kind != "Pods":
            raise ValueError(
                f"{kind}: the HPA then scales on one value for the whole Service, its ratio to the target "
                "times the ready pods, with no rule for missing or unready pods, which the simulator "
                "does not model (it simulates type Pods)"
            )
        return kind


class Autoscaling(_Values):
    # Validated when left out too: helm reads a missing flag as false.
    enabled: Annotated[bool, Field(validate_default=True)] = False
    minReplicas: PositiveInt
    maxReplicas: PositiveInt
    targetAverageDurationSeconds: PositiveFloat
    # Older copies of values.yaml have no offset: the duration itself.
    durationOffsetSeconds: NonNegativeFloat = 0.0
    rateWindow: Duration
    # Older copies of values.yaml have no choice of metric: Pods.
    metric: Metric = Metric(type="Pods")
    # None (a user's `behavior: null`): the chart renders no behavior.
    behavior: Behavior | None = None
    # Older copies of values.yaml have no second metric: duration only.
    slotUtilization: SlotUtilization | None = None

    @field_validator("enabled")
    @classmethod
    def _renders_an_hpa(cls, enabled: bool) -> bool:
        if not enabled:
            raise ValueError(
                "false: the chart renders no HPA of its own, and that HPA is what the simulator sizes "
                "(for a fixed count of pods, simulate minReplicas = maxReplicas = that count)"
            )
        return enabled

    @model_validator(mode="after")
    def _pairs_in_order(self) -> Autoscaling:
        if self.minReplicas > self.maxReplicas:
            raise ValueError(f"minReplicas {self.minReplicas} is above maxReplicas {self.maxReplicas}")
        if self.durationOffsetSeconds >= self.targetAverageDurationSeconds:
            raise ValueError(
                f"durationOffsetSeconds {self.durationOffsetSeconds:g} is not below "
                f"targetAverageDurationSeconds {self.targetAverageDurationSeconds:g}: for an inference of X s "
                "and a target of T s, (X - 0.75 x T) / 0.25 makes an unqueued pod read 0.75 of the target "
                "as the chart's 4 s does for its 10 s and 12 s (0 where that is below 0), and 0 reads the bare duration"
            )
        return self

    def spec(self) -> HpaSpec:
        """The HPA the chart renders from these values, its duration metric only (`Model` adds the second)."""
        behavior = self.behavior or Behavior()
        return HpaSpec(
            self.minReplicas,
            self.maxReplicas,
            self.targetAverageDurationSeconds,
            behavior.scaleUp.rules(DEFAULT_SCALE_UP),
            behavior.scaleDown.rules(DEFAULT_SCALE_DOWN),
            duration_offset=self.durationOffsetSeconds,
            has_behavior=self.behavior is not None,
        )


class Keda(_Values):
    enabled: bool = False

    @field_validator("enabled")
    @classmethod
    def _leaves_scaling_to_the_hpa(cls, enabled: bool) -> bool:
        if enabled:
            raise ValueError(
                "true: KEDA's own HPA then scales on an External metric from its Prometheus query "
                "and polling, which the simulator does not model"
            )
        return enabled


class ChartValues(_Values):
    server: Server
    probes: Probes
    serviceMonitor: ServiceMonitor
    # `prometheusRule: null` deletes the section, as in helm: no rules.
    prometheusRule: PrometheusRule = PrometheusRule()
    autoscaling: Autoscaling
    # Older copies of values.yaml have no KEDA section: no ScaledObject.
    keda: Keda = Keda()

    @field_validator("autoscaling")
    @classmethod
    def _offset_is_recorded(cls, autoscaling: Autoscaling, info: ValidationInfo) -> Autoscaling:
        """What deployment.yaml refuses: the offset reaches the HPA only as the PrometheusRule's recorded
        series, for the pods the ServiceMonitor scrapes."""
        scrapes, rules = info.data.get("serviceMonitor"), info.data.get("prometheusRule")
        if autoscaling.durationOffsetSeconds > 0 and not (scrapes and scrapes.enabled and rules and rules.enabled):
            raise ValueError(
                f"durationOffsetSeconds ({autoscaling.durationOffsetSeconds:g}) needs prometheusRule.enabled and "
                "serviceMonitor.enabled, as the chart refuses it: the PrometheusRule records the offset for each "
                "pod the ServiceMonitor scrapes. Without them set durationOffsetSeconds to 0 and "
                "behavior.scaleUp.tolerance to 0.1: the HPA then reads the bare duration"
            )
        return autoscaling

    @field_validator("autoscaling")
    @classmethod
    def _window_holds_four_scrapes(cls, autoscaling: Autoscaling, info: ValidationInfo) -> Autoscaling:
        """What servicemonitor.yaml refuses while it renders the ServiceMonitor (helm compares milliseconds)."""
        scrapes = info.data.get("serviceMonitor")
        if scrapes is None or not scrapes.enabled:
            return autoscaling
        if round(autoscaling.rateWindow * 1000) < 4 * round(scrapes.interval * 1000):
            raise ValueError(
                f"rateWindow ({autoscaling.rateWindow:g}s) must be at least 4 x serviceMonitor.interval "
                f"({scrapes.interval:g}s), as the chart refuses it: a shorter window holds fewer than 2 samples "
                "after a missed scrape and the HPA stops scaling"
            )
        return autoscaling
