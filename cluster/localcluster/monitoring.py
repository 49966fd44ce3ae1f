"""A real Prometheus that scrapes what the cluster's ServiceMonitors select.

Stands where kube-prometheus-stack's Prometheus Operator would: it reads the
ServiceMonitor and PrometheusRule objects that `helm install` put in the API
server and turns them into Prometheus configuration. Targets come from pod
discovery (pods' 10.88.x.x addresses, which the host routes to the node), with
relabeling that keeps exactly the pods
behind the ServiceMonitor's Services and gives them the labels an
Endpoints-based ServiceMonitor scrape gives: `namespace`, `pod`, `service`,
`container`, `endpoint`, `job`.

Debian's prometheus 2.42 is built without Kubernetes service discovery (its
config parser rejects `kubernetes_sd_configs`), so `PodDiscovery` lists the
pods from the API server and hands them to Prometheus over `http_sd_configs`
with the same `__meta_kubernetes_pod_*` labels the `pod` role produces: the
relabeling below is what it would be against kubernetes_sd.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from kubernetes import client, config

from localcluster.binaries import binary
from localcluster.kubectl import get_json
from localcluster.processes import ManagedProcess


class PodDiscovery:
    """An http_sd endpoint: GET /namespaces/<ns> lists that namespace's pods as targets."""

    def __init__(self, kubeconfig: Path, port: int):
        self.port = port
        self._api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="pod-discovery", daemon=True)

    def url(self, namespace: str) -> str:
        return f"http://127.0.0.1:{self.port}/namespaces/{namespace}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def targets(self, namespace: str) -> list[dict]:
        pods = self._api.list_namespaced_pod(namespace).items
        return [group for pod in pods if pod.status.pod_ip for group in pod_target_groups(pod)]

    def _handler(self):
        discovery = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = self.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "namespaces":
                    self.send_error(404)
                    return
                body = json.dumps(discovery.targets(parts[1])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


def pod_target_groups(pod) -> list[dict]:
    """One target per container port, labelled like kubernetes_sd's `pod` role."""
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    common = {
        "__meta_kubernetes_namespace": pod.metadata.namespace,
        "__meta_kubernetes_pod_name": pod.metadata.name,
        "__meta_kubernetes_pod_ip": pod.status.pod_ip,
        "__meta_kubernetes_pod_phase": pod.status.phase or "",
        "__meta_kubernetes_pod_ready": str(ready).lower(),
        "__meta_kubernetes_pod_node_name": pod.spec.node_name or "",
        **{label_meta(k): v for k, v in (pod.metadata.labels or {}).items()},
    }
    return [
        {
            "targets": [f"{pod.status.pod_ip}:{port.container_port}"],
            "labels": {
                **common,
                "__meta_kubernetes_pod_container_name": container.name,
                "__meta_kubernetes_pod_container_port_name": port.name or "",
                "__meta_kubernetes_pod_container_port_number": str(port.container_port),
            },
        }
        for container in pod.spec.containers
        for port in container.ports or []
    ]


def label_meta(name: str) -> str:
    """The discovery meta label for a pod label, as Prometheus sanitises it."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_configs(
    service_monitors: list[dict], services: list[dict], discovery: PodDiscovery, interval: str | None
) -> list[dict]:
    """One scrape job per ServiceMonitor endpoint and selected Service."""
    jobs = []
    for monitor in service_monitors:
        namespace = monitor["metadata"]["namespace"]
        selected = [
            svc for svc in services
            if svc["metadata"]["namespace"] == namespace and _matches(monitor["spec"]["selector"], svc)
        ]
        for index, endpoint in enumerate(monitor["spec"]["endpoints"]):
            for service in selected:
                jobs.append(_job(monitor, index, endpoint, service, discovery, interval))
    return jobs


def _matches(selector: dict, service: dict) -> bool:
    labels = service["metadata"].get("labels", {})
    if selector.get("matchExpressions"):
        raise NotImplementedError("ServiceMonitor matchExpressions are not translated")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _job(monitor, index, endpoint, service, discovery: PodDiscovery, interval) -> dict:
    namespace = monitor["metadata"]["namespace"]
    service_name = service["metadata"]["name"]
    keep_selected_pods = [
        {"action": "keep", "source_labels": [label_meta(key)], "regex": re.escape(value)}
        for key, value in service["spec"]["selector"].items()
    ]
    scrape_interval = interval or endpoint.get("interval", "30s")
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
        "scrape_interval": scrape_interval,
        # As the operator does: a timeout may not exceed the interval.
        "scrape_timeout": min(endpoint.get("scrapeTimeout", "10s"), scrape_interval, key=_seconds),
        "metrics_path": endpoint.get("path", "/metrics"),
        "scheme": endpoint.get("scheme", "http"),
        # kubernetes_sd watches; polling as often as the scrape comes close.
        "http_sd_configs": [{"url": discovery.url(namespace), "refresh_interval": scrape_interval}],
        "relabel_configs": [
            *keep_selected_pods,
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
             "regex": re.escape(endpoint["port"])},
            # Endpoints list no finished pods; neither does this.
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
             "regex": "Succeeded|Failed"},
            {"target_label": "namespace", "source_labels": ["__meta_kubernetes_namespace"]},
            {"target_label": "pod", "source_labels": ["__meta_kubernetes_pod_name"]},
            {"target_label": "container", "source_labels": ["__meta_kubernetes_pod_container_name"]},
            {"target_label": "service", "replacement": service_name},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            {"target_label": "job", "replacement": service_name},
        ],
    }


def _seconds(duration: str) -> float:
    """A Prometheus duration such as `15s`, `1m` or `1m30s` in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


def rule_groups(prometheus_rules: list[dict]) -> list[dict]:
    return [group for rule in prometheus_rules for group in rule["spec"]["groups"]]


class Prometheus:
    """Debian's prometheus binary on a loopback port, from a config this class writes."""

    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self._port = port
        self._process: ManagedProcess | None = None

    def write_config(self, interval: str, scrape_configs: list[dict], rule_groups: list[dict]) -> None:
        """Scrape and evaluate every `interval` (rules at the scrape pace, like the stack's values)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules_path = self.workdir / "rules.yaml"
        rules_path.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(rules_path)],
            "scrape_configs": scrape_configs,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def configure_from_cluster(
        self, kubeconfig: Path, discovery: PodDiscovery, scrape_interval: str | None
    ) -> None:
        monitors = get_json(kubeconfig, "servicemonitors.monitoring.coreos.com", "-A")["items"]
        services = get_json(kubeconfig, "services", "-A")["items"]
        rules = get_json(kubeconfig, "prometheusrules.monitoring.coreos.com", "-A")["items"]
        self.write_config(
            scrape_interval or "15s",
            scrape_configs(monitors, services, discovery, scrape_interval),
            rule_groups(rules),
        )

    def start(self, timeout: float = 60) -> None:
        self._process = ManagedProcess(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self._port}",
                "--storage.tsdb.retention.time=1d",
            ],
            self.log_path,
        )
        self._process.start()
        self._process.wait_http_ok(self.url + "/-/ready", timeout)

    def stop(self) -> None:
        if self._process:
            self._process.stop()
