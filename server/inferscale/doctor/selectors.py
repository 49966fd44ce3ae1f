"""Kubernetes label selectors (metav1.LabelSelector) evaluated against labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class InvalidSelector(ValueError):
    """A selector the API would refuse; custom resources (a Prometheus's
    serviceMonitorSelector) can still hold one, and select nothing with it."""


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy `selector`. An empty selector selects everything;
    None (the field unset) is the caller's to interpret, so it is refused here."""
    if selector is None:
        raise ValueError("an unset selector has no meaning of its own: decide before calling")
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_expression_holds(e, labels) for e in selector.get("matchExpressions") or [])


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator, values = expression["key"], _operator(expression), expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    return key not in labels


def _operator(expression: Mapping[str, Any]) -> str:
    operator = expression["operator"]
    if operator not in OPERATORS:
        raise InvalidSelector(f"unknown label selector operator {operator!r} (one of {', '.join(OPERATORS)})")
    return operator


def describe(selector: Mapping[str, Any]) -> str:
    """The selector as kubectl's -l would spell it, which is also the API's labelSelector query."""
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        operator = _operator(e)
        if operator in ("In", "NotIn"):
            parts.append(f"{e['key']} {operator.lower()} ({','.join(e.get('values') or [])})")
        else:
            parts.append(e["key"] if operator == "Exists" else f"!{e['key']}")
    return ",".join(parts) or "(everything)"
