"""Kubernetes label selectors (metav1.LabelSelector) evaluated against labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy `selector`. An empty selector selects everything;
    None (the field unset) is the caller's to interpret, so it is refused here."""
    if selector is None:
        raise ValueError("an unset selector has no meaning of its own: decide before calling")
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_expression_holds(e, labels) for e in selector.get("matchExpressions") or [])


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown label selector operator {operator!r}")


def describe(selector: Mapping[str, Any]) -> str:
    """The selector as kubectl's -l would spell it."""
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        if e["operator"] in ("In", "NotIn"):
            parts.append(f"{e['key']} {e['operator'].lower()} ({','.join(e.get('values') or [])})")
        else:
            parts.append(e["key"] if e["operator"] == "Exists" else f"!{e['key']}")
    return ",".join(parts) or "(everything)"
