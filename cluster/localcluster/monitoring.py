"""A real Prometheus that scrapes what the cluster's ServiceMonitors select.

Stands where kube-prometheus-stack's Prometheus Operator would: it reads the
ServiceMonitor and PrometheusRule objects that `helm install` put in the API
server and turns them into Prometheus configuration the way the operator
does: one job per ServiceMonitor endpoint, Kubernetes service discovery with
the `endpoints` role (the operator's default), and the relabeling that keeps
the selected Services' endpoints on the named port and gives each target
`namespace`, `service`, `pod`, `container`, `endpoint` and `job`. Prometheus
(3.x, built by ci/tools.sh) watches the API server itself, with an identity
of its own, and scrapes the pods at their 10.88.x.x addresses.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from localcluster.binaries import binary
from localcluster.kubectl import get_json
from localcluster.processes import ManagedProcess


def label_meta(kind: str, name: str) -> str:
    """The discovery meta label for a `kind` (service, pod) label, as Prometheus sanitises it."""
    return f"__meta_kubernetes_{kind}_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_configs(service_monitors: list[dict], kubeconfig: Path, interval: str | None) -> list[dict]:
    """One scrape job per ServiceMonitor endpoint, as the operator writes them."""
    return [
        _job(monitor, index, endpoint, kubeconfig, interval)
        for monitor in service_monitors
        for index, endpoint in enumerate(monitor["spec"]["endpoints"])
    ]


def _keep_selected_services(selector: dict) -> list[dict]:
    if selector.get("matchExpressions"):
        raise NotImplementedError("ServiceMonitor matchExpressions are not translated")
    return [
        {"action": "keep", "source_labels": [label_meta("service", key)], "regex": re.escape(value)}
        for key, value in selector.get("matchLabels", {}).items()
    ]


def _job(monitor, index, endpoint, kubeconfig: Path, interval) -> dict:
    namespace = monitor["metadata"]["namespace"]
    scrape_interval = interval or endpoint.get("interval", "30s")
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
        "scrape_interval": scrape_interval,
        # As the operator does: a timeout may not exceed the interval.
        "scrape_timeout": min(endpoint.get("scrapeTimeout", "10s"), scrape_interval, key=_seconds),
        "metrics_path": endpoint.get("path", "/metrics"),
        "scheme": endpoint.get("scheme", "http"),
        "kubernetes_sd_configs": [
            {"role": "endpoints", "kubeconfig_file": str(kubeconfig), "namespaces": {"names": [namespace]}}
        ],
        "relabel_configs": [
            *_keep_selected_services(monitor["spec"]["selector"]),
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
             "regex": re.escape(endpoint["port"])},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
             "regex": "Succeeded|Failed"},
            {"target_label": "namespace", "source_labels": ["__meta_kubernetes_namespace"]},
            {"target_label": "service", "source_labels": ["__meta_kubernetes_service_name"]},
            {"target_label": "pod", "source_labels": ["__meta_kubernetes_pod_name"]},
            {"target_label": "container", "source_labels": ["__meta_kubernetes_pod_container_name"]},
            {"target_label": "job", "source_labels": ["__meta_kubernetes_service_name"]},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
        ],
    }


def _seconds(duration: str) -> float:
    """A Prometheus duration such as `15s`, `1m` or `1m30s` in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


def rule_groups(prometheus_rules: list[dict]) -> list[dict]:
    return [group for rule in prometheus_rules for group in rule["spec"]["groups"]]


class Prometheus:
    """The prometheus binary ci/tools.sh built, on a loopback port, from a config this class writes."""

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
        self, kubeconfig: Path, discovery_kubeconfig: Path, scrape_interval: str | None
    ) -> None:
        """From the cluster's ServiceMonitors and PrometheusRules (read with `kubeconfig`);
        Prometheus discovers their targets with `discovery_kubeconfig`."""
        monitors = get_json(kubeconfig, "servicemonitors.monitoring.coreos.com", "-A")["items"]
        rules = get_json(kubeconfig, "prometheusrules.monitoring.coreos.com", "-A")["items"]
        self.write_config(
            scrape_interval or "15s",
            scrape_configs(monitors, discovery_kubeconfig, scrape_interval),
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
