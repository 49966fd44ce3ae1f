"""The real prometheus-adapter, fed the rules of adapter-values.yaml, behind the API server.

The adapter runs as a local process on a loopback port. The aggregation layer
reaches it through APIServices whose Service is of type ExternalName pointing
at 127.0.0.1: the aggregator resolves ExternalName Services to their host, and
verifies the adapter's certificate against `<service>.<namespace>.svc` as it
would in a cluster.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import yaml

from localcluster.binaries import binary
from localcluster.kubectl import apply, get_json
from localcluster.processes import ManagedProcess

NAMESPACE = "monitoring"
SERVICE = "prometheus-adapter"
USER = "prometheus-adapter"
API_SERVICES = (
    # (group, version, priority): the HPA controller prefers custom metrics v1beta2.
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("external.metrics.k8s.io", "v1beta1", 100),
)


def adapter_config(values_file: Path, rate_window: str | None = None) -> dict[str, Any]:
    """The adapter's --config, from the chart values file (rules.custom/external).

    `rate_window` swaps every range selector for a shorter window: tests use it
    to run the loop faster; the file itself stays as documented.
    """
    rules = yaml.safe_load(values_file.read_text())["rules"]
    config = {"rules": rules.get("custom", []), "externalRules": rules.get("external", [])}
    if rate_window:
        text = re.sub(r"\[\d+[smh]\]", f"[{rate_window}]", yaml.safe_dump(config))
        config = yaml.safe_load(text)
    return config


def rbac_objects() -> list[dict[str, Any]]:
    """What the adapter's identity needs: list what the rules map to, delegate auth."""
    subject = [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "prometheus-adapter-resource-reader"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces", "pods", "services", "nodes"],
                       "verbs": ["get", "list", "watch"]}],
        },
        _cluster_binding("prometheus-adapter-resource-reader", subject),
        _cluster_binding("system:auth-delegator", subject, name="prometheus-adapter-auth-delegator"),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "prometheus-adapter-auth-reader", "namespace": "kube-system"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "extension-apiserver-authentication-reader"},
            "subjects": subject,
        },
    ]


def _cluster_binding(role: str, subjects: list[dict], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name or role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def aggregation_objects(port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1",
                 "ports": [{"name": "https", "port": port}]},
    }
    api_services = [
        {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": f"{version}.{group}"},
            "spec": {
                "group": group, "version": version,
                "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100, "versionPriority": priority,
            },
        }
        for group, version, priority in API_SERVICES
    ]
    return [service, *api_services]


class PrometheusAdapter:
    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.port = port
        self._process: ManagedProcess | None = None

    def start(self, control_plane, prometheus_url: str, config: dict, relist_interval: str) -> None:
        """Run the adapter and register its APIServices; returns once they are Available."""
        admin = control_plane.admin_kubeconfig
        apply(admin, rbac_objects())
        kubeconfig = control_plane.kubeconfig_for(USER, ())
        serving = control_plane.pki.issue(
            "prometheus-adapter-serving", SERVICE,
            dns_names=(f"{SERVICE}.{NAMESPACE}.svc", "localhost"), ip_addresses=("127.0.0.1",),
            server=True,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self._process = ManagedProcess(
            "prometheus-adapter",
            [
                binary("adapter"),
                f"--secure-port={self.port}", "--bind-address=127.0.0.1",
                f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--requestheader-client-ca-file={control_plane.pki.front_proxy_ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                f"--client-ca-file={control_plane.pki.ca_cert}",
                f"--prometheus-url={prometheus_url}/",
                f"--metrics-relist-interval={relist_interval}",
                f"--config={config_file}",
                "--v=2",
            ],
            self.workdir / "adapter.log",
        )
        self._process.start()
        apply(admin, aggregation_objects(self.port, control_plane.pki.ca_cert.read_bytes()))
        self._wait_available(admin)

    def stop(self) -> None:
        if self._process:
            self._process.stop()

    def _wait_available(self, admin: Path, timeout: float = 90) -> None:
        names = [f"{version}.{group}" for group, version, _ in API_SERVICES]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.alive:
                raise RuntimeError(f"prometheus-adapter exited; see {self._process.log_path}")
            statuses = {name: _available(get_json(admin, "apiservice", name)) for name in names}
            if all(statuses.values()):
                return
            time.sleep(1)
        raise TimeoutError(f"APIServices not Available: {statuses}; see {self._process.log_path}")


def _available(api_service: dict) -> bool:
    return any(
        c["type"] == "Available" and c["status"] == "True"
        for c in api_service.get("status", {}).get("conditions", [])
    )
