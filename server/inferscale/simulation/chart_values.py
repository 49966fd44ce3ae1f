"""The chart's values that the simulated loop reads, checked as the loop needs them.

The simulator takes a copy of the chart's values.yaml. A file that lacks a
value or holds the wrong kind of thing fails here with the value's path
(`server.modelConcurrency`), so `inferscale simulate` names what to fix;
the values the loop does not read are left to the chart's own schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from .hpa import DEFAULT_TOLERANCE, HpaSpec, ScalingPolicy, ScalingRules

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
    """`override` laid over `base`, nested dicts merged key by key (as helm merges values)."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


# A Prometheus duration in the file, seconds once read.
Duration = Annotated[float, BeforeValidator(seconds)]


class _Values(BaseModel):
    # The rest of the chart's values are the chart's business, not the loop's.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Server(_Values):
    modelConcurrency: PositiveInt
    maxQueue: NonNegativeInt
    # Above 0: a pod's capacity is slots / inference time.
    inferenceDurationSeconds: PositiveFloat
    modelLoadSeconds: NonNegativeFloat


class Probe(_Values):
    periodSeconds: PositiveInt


class Probes(_Values):
    readiness: Probe


class ServiceMonitor(_Values):
    interval: Duration


class SlotUtilization(_Values):
    enabled: bool
    target: PositiveFloat


class Policy(_Values):
    type: Literal["Pods", "Percent"]
    value: PositiveInt
    periodSeconds: PositiveInt


class Rules(_Values):
    stabilizationWindowSeconds: NonNegativeInt
    selectPolicy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[Policy]
    tolerance: NonNegativeFloat = DEFAULT_TOLERANCE

    def rules(self) -> ScalingRules:
        policies = tuple(ScalingPolicy(p.type, p.value, p.periodSeconds) for p in self.policies)
        return ScalingRules(self.stabilizationWindowSeconds, self.selectPolicy, policies, self.tolerance)


class Behavior(_Values):
    scaleUp: Rules
    scaleDown: Rules


class Autoscaling(_Values):
    minReplicas: PositiveInt
    maxReplicas: PositiveInt
    targetAverageDurationSeconds: PositiveFloat
    rateWindow: Duration
    behavior: Behavior
    # Older copies of values.yaml have no second metric: duration only.
    slotUtilization: SlotUtilization | None = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Autoscaling:
        if self.minReplicas > self.maxReplicas:
            raise ValueError(f"minReplicas {self.minReplicas} is above maxReplicas {self.maxReplicas}")
        return self

    def spec(self) -> HpaSpec:
        """The HPA the chart renders from these values, its duration metric only (`Model` adds the second)."""
        return HpaSpec(
            self.minReplicas,
            self.maxReplicas,
            self.targetAverageDurationSeconds,
            self.behavior.scaleUp.rules(),
            self.behavior.scaleDown.rules(),
        )


class ChartValues(_Values):
    server: Server
    probes: Probes
    serviceMonitor: ServiceMonitor
    autoscaling: Autoscaling
