"""The cluster's DNS: CoreDNS as a Deployment in kube-system behind the
`kube-dns` Service, the way kubeadm installs it, answering for cluster.local.

The image is CoreDNS built from the Go module proxy by `ci/tools.sh node`
(COREDNS_VERSION there); the kubelet points every pod at CLUSTER_DNS_IP.
CoreDNS reads Services and EndpointSlices through the `kubernetes` Service,
as any in-cluster client does.

Names outside cluster.local are not forwarded: this machine has no resolver
a test may send traffic to, so they fail instead of leaving it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .binaries import image_archive
from .hpa import ready_replicas
from .images import packed_image
from .kubectl import apply
from .manifests import deployment
from .processes import wait_until

if TYPE_CHECKING:
    from inferscale.doctor.kube import Cluster

    from .controlplane import ControlPlane

NAMESPACE = "kube-system"
NAME = "coredns"
# The tenth address of the service range, where kubeadm puts it too.
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
IMAGE_NAME = "localhost/inferscale/coredns"
# What `ci/tools.sh node` packs CoreDNS as, in the cache's images.
ARCHIVE = "coredns.oci.tar"
HEALTH_PORT, READY_PORT, METRICS_PORT = 8080, 8181, 9153

COREFILE = f"""\
.:53 {{
    errors
    health :{HEALTH_PORT}
    ready :{READY_PORT}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    prometheus :{METRICS_PORT}
    cache 30
}}
"""


def coredns_archive() -> Path:
    return image_archive(ARCHIVE)


def coredns_image() -> str:
    """The name the node imports the archive under: its tag is the version ci/tools.sh built."""
    return packed_image(IMAGE_NAME, ARCHIVE)


def install(control_plane: ControlPlane, timeout: float = 120) -> None:
    """Apply CoreDNS's objects and wait until its pod is Ready (it has read the API)."""
    apply(control_plane.admin_kubeconfig, objects())
    wait_until(lambda: _ready(control_plane.api), "CoreDNS Ready", timeout, interval=0.5)


def _ready(api: Cluster) -> bool:
    return ready_replicas(api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}")) >= 1


def objects() -> list[dict]:
    labels = {"k8s-app": "kube-dns"}
    metadata = {"name": NAME, "namespace": NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"system:{NAME}"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"system:{NAME}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"system:{NAME}"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"Corefile": COREFILE}},
        _deployment(labels),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": CLUSTER_DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP"},
                ],
            },
        },
    ]


def _deployment(labels: dict) -> dict:
    container = {
        "name": NAME,
        "image": coredns_image(),
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": HEALTH_PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "170Mi"}},
        # Port 53 needs this one capability; the image's user is root, with nothing else.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    return deployment(
        NAME,
        NAMESPACE,
        labels,
        {
            "serviceAccountName": NAME,
            "priorityClassName": "system-cluster-critical",
            # Its own upstream would be itself.
            "dnsPolicy": "Default",
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": NAME}}],
        },
    )
