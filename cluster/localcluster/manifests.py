"""Kubernetes objects the harness writes for what it runs in the cluster
itself (CoreDNS, prometheus-adapter), shaped as their charts render them."""

from __future__ import annotations

from typing import Any


def deployment(name: str, namespace: str, labels: dict[str, str], pod_spec: dict[str, Any]) -> dict[str, Any]:
    """One replica of `pod_spec`, selected by `labels`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
