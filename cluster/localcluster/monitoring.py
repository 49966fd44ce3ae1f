"""The monitoring half of the loop as kube-prometheus-stack sets it up: the
Prometheus Operator in `monitoring`, the Prometheus it runs there from a
`Prometheus` resource (found by the adapter at prometheus-operated.monitoring.svc),
and kube-state-metrics, whose HPA series the chart's alerts read.

The operator is the one its project publishes: its own install manifests
(the Go module's bundle.yaml, which ci/tools.sh copies into the cache), moved
into `monitoring` where the chart puts it. Its images and Prometheus's are
ci/tools.sh's builds, imported by the node under the names
kube-prometheus-stack 88.5.3 renders. The `Prometheus` resource's spec is
`prometheus.prometheusSpec` of prometheus-values.yaml as shipped, with the
selectors the chart derives from it and the defaults the chart adds (image,
service account, security context); a stack in fast timing overrides the
scrape and evaluation intervals only.

From there nothing is ours: the operator turns the app chart's ServiceMonitor
and PrometheusRule into Prometheus's configuration, and Prometheus discovers
the pods through the API server. The chart itself is not installed: its
sources are not reachable from this machine (README, "What runs").
"""

from __future__ import annotations

import re
from pathlib import Path

import requests
import yaml

from .binaries import cache_dir, image_archive, MissingBinary
from .controlplane import wait_until
from .images import oci_image_name
from .kubectl import apply, kubectl

NAMESPACE = "monitoring"
# What kube-prometheus-stack names them for a release called kube-prometheus-stack.
PROMETHEUS_NAME = "kube-prometheus-stack-prometheus"
SERVICE_ACCOUNT = "kube-prometheus-stack-prometheus"
OPERATOR_VERSION = "v0.93.1"
PROMETHEUS_REPOSITORY = "quay.io/prometheus/prometheus"
# Repository -> the archive ci/tools.sh packs (its index holds the tag).
IMAGES = {
    "quay.io/prometheus-operator/prometheus-operator": "monitoring/prometheus-operator.oci.tar",
    "quay.io/prometheus-operator/prometheus-config-reloader": "monitoring/prometheus-config-reloader.oci.tar",
    PROMETHEUS_REPOSITORY: "monitoring/prometheus.oci.tar",
    "registry.k8s.io/kube-state-metrics/kube-state-metrics": "monitoring/kube-state-metrics.oci.tar",
}
KUBE_STATE_METRICS_VERSION = "v2.15.0"
# The chart's own switches in prometheusSpec: they choose selectors, they are not spec.
SELECTORS = ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")
# prometheusSpec.securityContext's default in kube-prometheus-stack.
SECURITY_CONTEXT = {
    "runAsUser": 1000, "runAsGroup": 2000, "runAsNonRoot": True, "fsGroup": 2000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
START_TIMEOUT = 180


def image_archives() -> dict[str, Path]:
    """Repository -> OCI archive, for the node to import."""
    return {repository: image_archive(name) for repository, name in IMAGES.items()}


def operator_bundle() -> Path:
    path = cache_dir() / "operator" / f"prometheus-operator-{OPERATOR_VERSION}.yaml"
    if not path.is_file():
        raise MissingBinary(f"{path} is missing: run `bash ci/tools.sh crds`")
    return path


def kube_state_metrics_manifests() -> Path:
    path = cache_dir() / "kube-state-metrics" / KUBE_STATE_METRICS_VERSION
    if not path.is_dir():
        raise MissingBinary(f"{path} is missing: run `bash ci/tools.sh monitoring`")
    return path


def kube_state_metrics_objects(manifests: Path) -> list[dict]:
    """kube-state-metrics from its own install manifests, moved into NAMESPACE,
    and the ServiceMonitor kube-prometheus-stack gives it. honorLabels: its
    series name the HPA's namespace in `namespace`, which Prometheus would
    otherwise overwrite with the exporter's own (the chart's HPA alerts match on it)."""
    objects = [yaml.safe_load(path.read_text()) for path in sorted(manifests.glob("*.yaml"))]
    for obj in objects:
        if "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = NAMESPACE
        for subject in obj.get("subjects", []):
            subject["namespace"] = NAMESPACE
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "kube-state-metrics", "namespace": NAMESPACE,
                     "labels": {"release": "kube-prometheus-stack"}},
        "spec": {"jobLabel": "app.kubernetes.io/name",
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-state-metrics"}},
                 "endpoints": [{"port": "http-metrics", "honorLabels": True}]},
    }
    return [*objects, monitor]


def operator_objects(bundle: Path) -> list[dict]:
    """The operator's RBAC, Deployment and Service from its bundle, moved into NAMESPACE.

    The bundle's CRDs are left out: the stack applies them from the same module
    beforehand. Documents are split as text: PyYAML's safe loader cannot read
    the CRDs (a bare `=` in them is YAML's obsolete value tag)."""
    objects = []
    for document in re.split(r"(?m)^---\s*$", bundle.read_text()):
        if re.search(r"(?m)^kind: CustomResourceDefinition", document):
            continue
        obj = yaml.safe_load(document)
        if not obj:
            continue
        if "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = NAMESPACE
        for subject in obj.get("subjects", []):
            subject["namespace"] = NAMESPACE
        objects.append(obj)
    return objects


def prometheus_spec(values: dict, scrape_interval: str | None) -> dict:
    """The `Prometheus` resource's spec as kube-prometheus-stack renders it from `values`."""
    spec = dict(values["prometheus"]["prometheusSpec"])
    for kind in SELECTORS:
        nil_uses_helm_values = spec.pop(f"{kind}SelectorNilUsesHelmValues", True)
        if spec.get(f"{kind}Selector") is None:
            spec[f"{kind}Selector"] = (
                {"matchLabels": {"release": "kube-prometheus-stack"}} if nil_uses_helm_values else {}
            )
        spec.setdefault(f"{kind}NamespaceSelector", {})
    image = oci_image_name(PROMETHEUS_REPOSITORY, image_archive(IMAGES[PROMETHEUS_REPOSITORY]))
    spec.update(
        image=image,
        version=image.rsplit(":", 1)[1].removesuffix("-distroless"),
        serviceAccountName=SERVICE_ACCOUNT,
        securityContext=SECURITY_CONTEXT,
        replicas=1,
    )
    if scrape_interval:
        spec.update(scrapeInterval=scrape_interval, evaluationInterval=scrape_interval)
    return spec


def prometheus_objects(spec: dict, node_port: int) -> list[dict]:
    """Prometheus's identity (what the chart grants it), the resource, and a NodePort for the host."""
    labels = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": PROMETHEUS_NAME}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": SERVICE_ACCOUNT},
         "rules": [
             {"apiGroups": [""], "resources": ["nodes", "nodes/metrics", "services", "endpoints", "pods"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]},
             {"nonResourceURLs": ["/metrics", "/metrics/cadvisor"], "verbs": ["get"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": SERVICE_ACCOUNT},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SERVICE_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
         "metadata": {"name": PROMETHEUS_NAME, "namespace": NAMESPACE}, "spec": spec},
        # The chart's Service is a ClusterIP; the host reaches only node ports.
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": PROMETHEUS_NAME, "namespace": NAMESPACE},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"name": "http-web", "port": 9090, "targetPort": 9090, "nodePort": node_port}]}},
    ]


def install(kubeconfig: Path, values_file: Path, url: str, node_port: int,
            scrape_interval: str | None = None) -> None:
    """The operator, then Prometheus; returns once Prometheus answers ready at `url`
    (its NodePort `node_port` on the node)."""
    apply(kubeconfig, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    apply(kubeconfig, operator_objects(operator_bundle()))
    kubectl(kubeconfig, "rollout", "status", "-n", NAMESPACE, "deployment/prometheus-operator",
            f"--timeout={START_TIMEOUT}s")
    values = yaml.safe_load(values_file.read_text())
    apply(kubeconfig, prometheus_objects(prometheus_spec(values, scrape_interval), node_port))
    apply(kubeconfig, kube_state_metrics_objects(kube_state_metrics_manifests()))
    wait_until(lambda: ready(url), "the operator's Prometheus ready", START_TIMEOUT, interval=1)


def ready(url: str) -> bool:
    """Whether Prometheus at `url` answers ready."""
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False
