"""The real prometheus-adapter as a Deployment in `monitoring`, fed the rules of
adapter-values.yaml, behind the aggregation layer.

What the prometheus-adapter chart installs, from the values file as shipped:
its rules as a ConfigMap, `prometheus.url` (run through the chart's `tpl`,
so it names prometheus-operated in the adapter's namespace), the relist
interval, log level and resources; a ServiceAccount with the RBAC it
needs; a ClusterIP Service; and the APIServices. The aggregator reaches the
adapter through that Service: the host routes the Service range to the node,
whose kube-proxy rules pick the pod, as on a control-plane node. One thing
differs from the chart's defaults, on purpose: the adapter's serving
certificate is signed by the cluster CA and the APIServices carry that CA, so
the aggregator verifies `prometheus-adapter.monitoring.svc` instead of
skipping TLS verification. The chart itself is not installed: its sources are
not reachable from this machine (docs/demo.md, "What runs").
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import yaml

from .binaries import image_archive
from .images import packed_image
from .kubectl import apply, kubectl
from .manifests import deployment
from .processes import wait_until

NAMESPACE = "monitoring"
NAME = "prometheus-adapter"
# The repository the prometheus-adapter chart renders, and ci/tools.sh's archive of it.
IMAGE_REPOSITORY = "registry.k8s.io/prometheus-adapter/prometheus-adapter"
IMAGE_ARCHIVE = "monitoring/prometheus-adapter.oci.tar"
SECURE_PORT = 6443
CONFIG_DIR = "/etc/adapter"
CERT_DIR = "/var/run/serving-cert"
API_SERVICES = (
    # (group, version, priority): the HPA controller prefers custom metrics v1beta2.
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("external.metrics.k8s.io", "v1beta1", 100),
)
START_TIMEOUT = 180


def image_archives() -> dict[str, Path]:
    """Repository -> OCI archive, for the node to import."""
    return {IMAGE_REPOSITORY: image_archive(IMAGE_ARCHIVE)}


def adapter_config(values: dict[str, Any], rate_window: str | None = None) -> dict[str, Any]:
    """The adapter's --config, from the chart values (rules.custom/external).

    `rate_window` swaps every range selector for a shorter window: tests use it
    to run the loop faster; the file itself stays as documented.
    """
    rules = values["rules"]
    config = {"rules": rules.get("custom", []), "externalRules": rules.get("external", [])}
    if rate_window:
        text = re.sub(r"\[\d+[smh]\]", f"[{rate_window}]", yaml.safe_dump(config))
        config = yaml.safe_load(text)
    return config


def prometheus_url(values: dict[str, Any]) -> str:
    """`prometheus.url`:`port``path` as the chart renders them, its `tpl` resolving the namespace."""
    prometheus = values["prometheus"]
    url = prometheus["url"].replace("{{ .Release.Namespace }}", NAMESPACE)
    if "{{" in url:
        raise ValueError(f"prometheus.url {prometheus['url']!r}: only {{{{ .Release.Namespace }}}} is resolved here")
    return f"{url}:{prometheus['port']}{prometheus.get('path') or ''}"


def rbac_objects() -> list[dict[str, Any]]:
    """What the adapter's ServiceAccount needs: list what the rules map to, delegate auth."""
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{NAME}-resource-reader"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "pods", "services", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        _cluster_binding(f"{NAME}-resource-reader", subject),
        _cluster_binding("system:auth-delegator", subject, name=f"{NAME}-auth-delegator"),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{NAME}-auth-reader", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": subject,
        },
    ]


def _cluster_binding(role: str, subjects: list[dict], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name or role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def deployment_objects(
    values: dict[str, Any],
    config: dict[str, Any],
    image: str,
    serving_cert: bytes,
    serving_key: bytes,
    relist_interval: str | None,
) -> list[dict[str, Any]]:
    """The rules, the serving certificate, the Deployment and its Service."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}
    args = [
        f"--secure-port={SECURE_PORT}",
        f"--tls-cert-file={CERT_DIR}/tls.crt",
        f"--tls-private-key-file={CERT_DIR}/tls.key",
        f"--prometheus-url={prometheus_url(values)}",
        f"--metrics-relist-interval={relist_interval or values['metricsRelistInterval']}",
        f"--config={CONFIG_DIR}/config.yaml",
        f"--v={values['logLevel']}",
    ]
    container = {
        "name": NAME,
        "image": image,
        "args": args,
        "ports": [{"name": "https", "containerPort": SECURE_PORT}],
        "readinessProbe": _probe("/readyz", period_seconds=2),
        "livenessProbe": _probe("/livez", period_seconds=10),
        "resources": values.get("resources", {}),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "serving-cert", "mountPath": CERT_DIR, "readOnly": True},
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "data": {"config.yaml": yaml.safe_dump(config, sort_keys=False)},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": f"{NAME}-serving", "namespace": NAMESPACE},
            "data": {
                "tls.crt": base64.b64encode(serving_cert).decode(),
                "tls.key": base64.b64encode(serving_key).decode(),
            },
        },
        deployment(
            NAME,
            NAMESPACE,
            labels,
            {
                "serviceAccountName": NAME,
                "containers": [container],
                "volumes": [
                    {"name": "config", "configMap": {"name": NAME}},
                    {"name": "serving-cert", "secret": {"secretName": f"{NAME}-serving"}},
                ],
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": "https"}]},
        },
    ]


def _probe(path: str, period_seconds: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "https", "scheme": "HTTPS"}, "periodSeconds": period_seconds}


def api_service_objects(ca_bundle: bytes) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{group}"},
            "spec": {
                "group": group,
                "version": version,
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": priority,
            },
        }
        for group, version, priority in API_SERVICES
    ]


def install(
    control_plane, values_file: Path, rate_window: str | None = None, relist_interval: str | None = None
) -> None:
    """The adapter from `values_file`, then its APIServices; returns once they are Available.

    `rate_window` and `relist_interval`, when given, replace the file's (fast timing)."""
    admin = control_plane.admin_kubeconfig
    values = yaml.safe_load(values_file.read_text())
    serving = control_plane.pki.issue(
        f"{NAME}-serving",
        NAME,
        dns_names=(f"{NAME}.{NAMESPACE}.svc",),
        server=True,
    )
    image = packed_image(IMAGE_REPOSITORY, IMAGE_ARCHIVE)
    apply(admin, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    apply(admin, rbac_objects())
    apply(
        admin,
        deployment_objects(
            values,
            adapter_config(values, rate_window),
            image,
            serving.cert.read_bytes(),
            serving.key.read_bytes(),
            relist_interval,
        ),
    )
    # Past kubectl's own timeout, so that kubectl says what it waited for.
    kubectl(
        admin,
        "rollout",
        "status",
        "-n",
        NAMESPACE,
        f"deployment/{NAME}",
        f"--timeout={START_TIMEOUT}s",
        timeout=START_TIMEOUT + 30,
    )
    apply(admin, api_service_objects(control_plane.pki.ca_cert.read_bytes()))
    names = [f"{version}.{group}" for group, version, _ in API_SERVICES]
    wait_until(
        lambda: all(
            _available(control_plane.api.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")) for name in names
        ),
        f"the {NAME} APIServices Available",
        90,
        interval=1,
    )


def _available(api_service: dict) -> bool:
    return any(
        c["type"] == "Available" and c["status"] == "True" for c in api_service.get("status", {}).get("conditions", [])
    )
