"""What a HorizontalPodAutoscaler's status says of its metrics, as `kubectl get
hpa` shows them: the current value of each Pods or External metric of its spec
that the controller could read. One it could not read has an empty entry in
status.currentMetrics (`computeReplicasForMetrics`), or none yet: `<unknown>`."""

from __future__ import annotations

from typing import Any

# (type, metric name): how a spec.metrics entry and its status.currentMetrics entry pair up.
MetricKey = tuple[str, str | None]


def metric_key(entry: dict[str, Any]) -> MetricKey:
    source = entry.get(entry.get("type", "").lower()) or {}
    return entry.get("type", ""), (source.get("metric") or {}).get("name")


def spec_metrics(hpa: dict[str, Any]) -> list[MetricKey]:
    return [metric_key(metric) for metric in hpa.get("spec", {}).get("metrics") or []]


def current_values(hpa: dict[str, Any]) -> dict[MetricKey, str]:
    """Each read metric's current value, a quantity such as `10500m`."""
    values = {}
    for entry in hpa.get("status", {}).get("currentMetrics") or []:
        current = (entry.get(entry.get("type", "").lower()) or {}).get("current") or {}
        value = current.get("averageValue") or current.get("value")
        if value is not None:
            values[metric_key(entry)] = value
    return values
