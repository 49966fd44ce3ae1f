"""`inferscale simulate`'s output: the autoscaled run beside the fewest always-on pods."""

from __future__ import annotations

import dataclasses
import json

from .figures import Figures
from .scenarios import Model, Scenario


def _baseline_minutes(case: Scenario, fixed: int | None) -> float | None:
    return None if fixed is None else fixed * case.seconds / 60


def back_under_text(autoscaled: Figures) -> str:
    if autoscaled.never_over_target:
        return "never over the target"
    back = autoscaled.back_under_target_seconds
    return "never" if back is None else f"{back:.0f} s after the change"


def as_json(model: Model, case: Scenario, arrivals: str, autoscaled: Figures, fixed: int | None) -> str:
    return json.dumps(
        {
            "load": case.shape.name,
            "arrivals": arrivals,
            "seconds": case.seconds,
            "pod_capacity_rps": model.pod_capacity,
            "target_seconds": model.hpa.target,
            "autoscaled": dataclasses.asdict(autoscaled),
            "fewest_fixed_replicas": fixed,
            "fewest_fixed_pod_minutes": _baseline_minutes(case, fixed),
        },
        indent=2,
    )


def as_text(model: Model, case: Scenario, arrivals: str, autoscaled: Figures, fixed: int | None) -> str:
    baseline = _baseline_minutes(case, fixed)
    rows = [
        ("back under target", back_under_text(autoscaled)),
        *(
            [("back to minReplicas", f"{autoscaled.back_to_min_seconds:.0f} s after the change")]
            if case.shape.rate(case.seconds) == 0 and autoscaled.back_to_min_seconds is not None
            else []
        ),
        ("peak replicas", f"{autoscaled.peak_replicas}"),
        (
            "steady replicas",
            f"{autoscaled.steady_replicas:g}"
            + (f" (fewest always-on that meet the target: {fixed})" if fixed else " (no fixed count meets the target)"),
        ),
        (
            "refused",
            f"{autoscaled.refused_percent:.2f} % of the requests arriving {case.refusals_span} "
            "(the change to 10 min after the load settles)",
        ),
        ("replica changes", f"{autoscaled.changes_per_hour:.1f} per hour over the steady span"),
        ("pod-minutes", f"{autoscaled.pod_minutes:.0f}" + (f" (always-on: {baseline:.0f})" if baseline else "")),
        ("mean request", f"{autoscaled.mean_seconds:.2f} s (target {model.hpa.target:g} s)"),
    ]
    width = max(len(name) for name, _ in rows)
    header = (
        f"{case.shape.name}, {arrivals} arrivals, {case.seconds / 3600:g} h simulated; "
        f"one pod answers {model.pod_capacity:g} req/s"
    )
    return "\n".join([header, *(f"  {name:<{width}}  {value}" for name, value in rows)])
