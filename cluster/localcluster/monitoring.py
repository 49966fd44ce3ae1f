"""The monitoring half of the loop as kube-prometheus-stack sets it up: the
Prometheus Operator in `monitoring`, the Prometheus it runs there from a
`Prometheus` resource (found by the adapter at prometheus-operated.monitoring.svc),
kube-state-metrics, whose HPA series the chart's alerts read, and the
Alertmanager the operator runs from an `Alertmanager` resource, which
Prometheus sends its alerts to, the always-firing Watchdog among them.

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
the pods through the API server. Alertmanager's configuration is
`alertmanager.config` of prometheus-values.yaml. Of the chart's default
rules and exporters, the stack carries the ones its tests read: Watchdog
(general.rules), and the API server's scrape with KubeAPIDown
(kubernetes-system-apiserver). The chart itself is not installed: its
sources are not reachable from this machine (docs/demo.md, "What runs").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from inferscale.simulation.chart_values import merged

from .binaries import MissingBinary, cache_dir, image_archive
from .images import packed_image
from .kubectl import apply, kubectl
from .processes import wait_until

NAMESPACE = "monitoring"
# What kube-prometheus-stack names them for a release called kube-prometheus-stack.
PROMETHEUS_NAME = "kube-prometheus-stack-prometheus"
SERVICE_ACCOUNT = "kube-prometheus-stack-prometheus"
OPERATOR_VERSION = "v0.93.1"
PROMETHEUS_REPOSITORY = "quay.io/prometheus/prometheus"
ALERTMANAGER_NAME = "kube-prometheus-stack-alertmanager"
ALERTMANAGER_REPOSITORY = "quay.io/prometheus/alertmanager"
# Repository -> the archive ci/tools.sh packs (its index holds the tag).
IMAGES = {
    "quay.io/prometheus-operator/prometheus-operator": "monitoring/prometheus-operator.oci.tar",
    "quay.io/prometheus-operator/prometheus-config-reloader": "monitoring/prometheus-config-reloader.oci.tar",
    PROMETHEUS_REPOSITORY: "monitoring/prometheus.oci.tar",
    "registry.k8s.io/kube-state-metrics/kube-state-metrics": "monitoring/kube-state-metrics.oci.tar",
    ALERTMANAGER_REPOSITORY: "monitoring/alertmanager.oci.tar",
}
KUBE_STATE_METRICS_VERSION = "v2.15.0"
# The chart's own switches in prometheusSpec: they choose selectors, they are not spec.
SELECTORS = ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")
# prometheusSpec.securityContext's default in kube-prometheus-stack.
SECURITY_CONTEXT = {
    "runAsUser": 1000,
    "runAsGroup": 2000,
    "runAsNonRoot": True,
    "fsGroup": 2000,
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
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "kube-state-metrics",
            "namespace": NAMESPACE,
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-state-metrics"}},
            "endpoints": [{"port": "http-metrics", "honorLabels": True}],
        },
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


def prometheus_spec(values: dict, image: str, scrape_interval: str | None, resend_delay: str | None = None) -> dict:
    """The `Prometheus` resource's spec as kube-prometheus-stack renders it from
    `values`, running `image`. `resend_delay` shortens how long Alertmanager keeps an alert that
    Prometheus stopped sending (4 resend delays; Prometheus's default is 1m)."""
    spec = dict(values["prometheus"]["prometheusSpec"])
    for kind in SELECTORS:
        nil_uses_helm_values = spec.pop(f"{kind}SelectorNilUsesHelmValues", True)
        if spec.get(f"{kind}Selector") is None:
            spec[f"{kind}Selector"] = (
                {"matchLabels": {"release": "kube-prometheus-stack"}} if nil_uses_helm_values else {}
            )
        spec.setdefault(f"{kind}NamespaceSelector", {})
    spec.update(
        image=image,
        version=image.rsplit(":", 1)[1].removesuffix("-distroless"),
        serviceAccountName=SERVICE_ACCOUNT,
        securityContext=SECURITY_CONTEXT,
        replicas=1,
    )
    if scrape_interval:
        spec.update(scrapeInterval=scrape_interval, evaluationInterval=scrape_interval)
    if values["alertmanager"]["enabled"]:
        spec["alerting"] = {
            "alertmanagers": [
                {"namespace": NAMESPACE, "name": ALERTMANAGER_NAME, "port": "http-web", "apiVersion": "v2"},
            ]
        }
    if resend_delay:
        spec["rules"] = {"alert": {"resendDelay": resend_delay}}
    return spec


def prometheus_objects(spec: dict, node_port: int) -> list[dict]:
    """Prometheus's identity (what the chart grants it), the resource, and a NodePort for the host."""
    labels = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": PROMETHEUS_NAME}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": SERVICE_ACCOUNT},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "nodes/metrics", "services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]},
                {"nonResourceURLs": ["/metrics", "/metrics/cadvisor"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": PROMETHEUS_NAME, "namespace": NAMESPACE},
            "spec": spec,
        },
        node_port_service(PROMETHEUS_NAME, labels, 9090, node_port),
    ]


def node_port_service(name: str, selector: dict, port: int, node_port: int) -> dict:
    """The chart's Service for `name` is a ClusterIP; the host reaches only node ports."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "type": "NodePort",
            "selector": selector,
            "ports": [{"name": "http-web", "port": port, "targetPort": port, "nodePort": node_port}],
        },
    }


def alertmanager_objects(config: dict, node_port: int, image: str) -> list[dict]:
    """The configuration Secret the operator reads by the resource's name, the
    `Alertmanager` resource running `image`, and its Service, a NodePort for the host."""
    labels = {"app.kubernetes.io/name": "alertmanager", "alertmanager": ALERTMANAGER_NAME}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"alertmanager-{ALERTMANAGER_NAME}", "namespace": NAMESPACE},
            "stringData": {"alertmanager.yaml": yaml.safe_dump(config)},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Alertmanager",
            "metadata": {"name": ALERTMANAGER_NAME, "namespace": NAMESPACE},
            "spec": {
                "image": image,
                "version": image.rsplit(":", 1)[1],
                "replicas": 1,
                "securityContext": SECURITY_CONTEXT,
            },
        },
        node_port_service(ALERTMANAGER_NAME, labels, 9093, node_port),
    ]


def default_rule(group: str, alert: dict) -> dict:
    """A PrometheusRule holding one alert of the chart's default rules, named
    and labelled as the chart names its rule groups' resources."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"kube-prometheus-stack-{group}",
            "namespace": NAMESPACE,
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {"groups": [{"name": group, "rules": [alert]}]},
    }


def watchdog_rule() -> dict:
    """The Watchdog alert of general.rules."""
    return default_rule(
        "general.rules",
        {
            "alert": "Watchdog",
            "expr": "vector(1)",
            "labels": {"severity": "none"},
            "annotations": {
                "summary": "Always firing: its notifications stopping means alerting is down.",
                "description": "Route it to a dead man's switch, which pages when they stop.",
            },
        },
    )


def api_down_rule(pending_for: str) -> dict:
    """KubeAPIDown of kubernetes-system-apiserver: no API server target
    answered its last scrape (or none is left) for `pending_for`; the chart
    waits 15m."""
    return default_rule(
        "kubernetes-system-apiserver",
        {
            "alert": "KubeAPIDown",
            "expr": 'absent(up{job="apiserver"} == 1)',
            "for": pending_for,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "No API server answers Prometheus's scrapes.",
                "description": "Nothing can read or change the cluster: the HPA holds its last "
                "replica count and no pod is created or replaced.",
            },
        },
    )


def apiserver_service_monitor() -> dict:
    """The chart's scrape of the API server: the `kubernetes` Service's
    endpoints, over TLS checked against the cluster CA, with Prometheus's
    service-account token; `job` is the Service's `component` label, "apiserver"."""
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "kube-prometheus-stack-apiserver",
            "namespace": NAMESPACE,
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {
            "jobLabel": "component",
            "namespaceSelector": {"matchNames": ["default"]},
            "selector": {"matchLabels": {"component": "apiserver", "provider": "kubernetes"}},
            "endpoints": [
                {
                    "port": "https",
                    "scheme": "https",
                    "bearerTokenFile": f"{account}/token",
                    "tlsConfig": {
                        "caFile": f"{account}/ca.crt",
                        "serverName": "kubernetes",
                        "insecureSkipVerify": False,
                    },
                }
            ],
        },
    }


@dataclass(frozen=True)
class AlertmanagerSetup:
    node_port: int
    url: str
    # Laid over prometheus-values.yaml's alertmanager.config.
    config: dict = field(default_factory=dict)
    resend_delay: str | None = None


def install(
    kubeconfig: Path,
    values_file: Path,
    url: str,
    node_port: int,
    scrape_interval: str | None,
    alertmanager: AlertmanagerSetup,
    api_down_for: str,
) -> None:
    """The operator, then Prometheus and Alertmanager; returns once both answer
    ready, Prometheus at `url` (its NodePort `node_port` on the node)."""
    apply(kubeconfig, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    apply(kubeconfig, operator_objects(operator_bundle()))
    kubectl(
        kubeconfig,
        "rollout",
        "status",
        "-n",
        NAMESPACE,
        "deployment/prometheus-operator",
        f"--timeout={START_TIMEOUT}s",
        # Past kubectl's own timeout, so that kubectl says what it waited for.
        timeout=START_TIMEOUT + 30,
    )
    values = yaml.safe_load(values_file.read_text())
    spec = prometheus_spec(
        values,
        packed_image(PROMETHEUS_REPOSITORY, IMAGES[PROMETHEUS_REPOSITORY]),
        scrape_interval,
        alertmanager.resend_delay,
    )
    apply(kubeconfig, prometheus_objects(spec, node_port))
    apply(kubeconfig, kube_state_metrics_objects(kube_state_metrics_manifests()))
    # A list in the overrides (receivers, routes) replaces the file's whole, as in helm.
    config = merged(values["alertmanager"]["config"], alertmanager.config)
    apply(
        kubeconfig,
        [
            *alertmanager_objects(
                config, alertmanager.node_port, packed_image(ALERTMANAGER_REPOSITORY, IMAGES[ALERTMANAGER_REPOSITORY])
            ),
            watchdog_rule(),
            apiserver_service_monitor(),
            api_down_rule(api_down_for),
        ],
    )
    wait_until(lambda: ready(url), "the operator's Prometheus ready", START_TIMEOUT, interval=1)
    wait_until(lambda: ready(alertmanager.url), "the operator's Alertmanager ready", START_TIMEOUT, interval=1)


def ready(url: str) -> bool:
    """Whether Prometheus or Alertmanager at `url` answers ready."""
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False
