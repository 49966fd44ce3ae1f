"""The whole autoscaling loop on one machine.

control plane (etcd, kube-apiserver, kube-controller-manager with the HPA
and endpoint controllers, kube-scheduler)  ->  a real node (containerd,
runc, the CNI bridge, the kubelet, kube-proxy; see node.py) with CoreDNS
as the cluster DNS (dns.py)  ->  the app
chart, installed with helm, running the image built from the Dockerfile,
its Service a NodePort on the node's address  ->  the Prometheus Operator
and the Prometheus it runs (monitoring.py), configured by the operator from
the chart's ServiceMonitor and PrometheusRule, scraping the pods' IPs
->  prometheus-adapter, a Deployment with the rules of adapter-values.yaml,
behind the aggregation layer through its Service (adapter.py)  ->  the HPA
scales the Deployment.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import requests
import yaml

from inferscale.doctor.kube import Cluster
from inferscale.simulation.chart_values import merged, seconds
from localcluster import adapter, dns, monitoring
from localcluster.binaries import bin_dir, binary
from localcluster.controlplane import ControlPlane
from localcluster.hpa import at_rest
from localcluster.images import app_image
from localcluster.kubectl import apply, kubectl
from localcluster.node import HOST_IP, NODE_IP, RealNode
from localcluster.processes import undone_on_failure, wait_until
from localcluster.repo import REPO

CHART = REPO / "chart"
ADAPTER_VALUES = REPO / "adapter-values.yaml"
PROMETHEUS_VALUES = REPO / "prometheus-values.yaml"


@dataclass
class StackConfig:
    workdir: Path
    # Where users look, on NODE_IP: the app's Service and Prometheus's, node ports both.
    node_port: int = 30080
    prometheus_node_port: int = 30090
    alertmanager_node_port: int = 30093
    # Laid over prometheus-values.yaml's alertmanager.config (a receiver's URL, shorter intervals).
    alertmanager_config: dict = field(default_factory=dict)
    # Prometheus's --rules.alert.resend-delay; None: its default, 1m.
    alert_resend_delay: str | None = None
    # How long KubeAPIDown waits before it fires; the chart's default rules wait 15m.
    api_down_for: str = "15m"
    namespace: str = "inferscale"
    release: str = "inferscale"
    # Values laid over the chart's defaults (a nested dict, as in values.yaml).
    chart_values: dict = field(default_factory=dict)
    # None keeps what the chart and adapter-values.yaml say (15s scrape, 1m window, 30s relist).
    scrape_interval: str | None = None
    rate_window: str | None = None
    relist_interval: str | None = None
    hpa_sync_period: str = "15s"
    crds_dir: Path | None = None


def installed_values(config: StackConfig) -> dict[str, Any]:
    """The chart's values as the stack installs them: values.yaml with the config's laid over."""
    return merged(yaml.safe_load((CHART / "values.yaml").read_text()), config.chart_values)


def pod_capacity(config: StackConfig) -> float:
    """Requests/s one pod serves at full use: its model slots over the inference time."""
    server = installed_values(config)["server"]
    return server["modelConcurrency"] / server["inferenceDurationSeconds"]


def check_relist_covers_scrapes(config: StackConfig) -> None:
    """prometheus-adapter keeps, at each relist, only the series with a sample
    in the last relist interval (its --metrics-max-age defaults to that
    interval). Relisting faster than the app is scraped drops the app's
    metrics from every other list, and the HPA reads them as missing on
    alternate syncs (measured: 5 s relists against 10 s scrapes)."""
    scrape = installed_values(config)["serviceMonitor"]["interval"]
    relist = config.relist_interval or yaml.safe_load(ADAPTER_VALUES.read_text())["metricsRelistInterval"]
    if seconds(relist) < seconds(scrape):
        raise ValueError(
            f"the adapter's relist interval ({relist}) must be at least the app's scrape "
            f"interval ({scrape}), or the HPA loses its metrics on every other relist"
        )


def crds_dir() -> Path:
    """The monitoring.coreos.com CRDs ci/tools.sh copied from the pinned
    prometheus-operator module (another version's may be left beside them)."""
    found = bin_dir().parent / "crds" / f"prometheus-operator-{monitoring.OPERATOR_VERSION}"
    if not any(found.glob("*.yaml")):
        raise FileNotFoundError(f"no CRDs in {found}: run `bash ci/tools.sh crds`")
    return found


class LocalStack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.control_plane = ControlPlane(
            config.workdir / "control-plane",
            hpa_sync_period=config.hpa_sync_period,
            advertise_address=HOST_IP,
        )
        self.node: RealNode | None = None
        self._stack = contextlib.ExitStack()

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.admin_kubeconfig

    @property
    def prometheus_url(self) -> str:
        """The operator's Prometheus, its API and web UI, through a NodePort."""
        return f"http://{NODE_IP}:{self.config.prometheus_node_port}"

    @property
    def alertmanager_url(self) -> str:
        """The operator's Alertmanager, its API, through a NodePort."""
        return f"http://{NODE_IP}:{self.config.alertmanager_node_port}"

    @property
    def service_url(self) -> str:
        """The chart's Service as a client outside the cluster reaches it: kube-proxy's NodePort."""
        return f"http://{NODE_IP}:{self.config.node_port}"

    @property
    def fullname(self) -> str:
        """The name of the chart's Deployment, Service and HPA (its `inferscale.fullname`)."""
        release = self.config.release
        return release if "inferscale" in release else f"{release}-inferscale"

    def __enter__(self) -> LocalStack:
        with undone_on_failure(self.down):
            self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> None:
        check_relist_covers_scrapes(self.config)
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        image = app_image()
        self.control_plane.start()
        self._stack.callback(self.control_plane.stop)
        self.node = RealNode(
            self.control_plane,
            self.config.workdir / "node",
            images=[image],
            named_images={**monitoring.image_archives(), **adapter.image_archives()},
        )
        self._stack.callback(self.node.stop)
        self.node.start()
        dns.install(self.control_plane)
        self._install_crds()
        alertmanager = monitoring.AlertmanagerSetup(
            self.config.alertmanager_node_port,
            self.alertmanager_url,
            self.config.alertmanager_config,
            self.config.alert_resend_delay,
        )
        monitoring.install(
            self.kubeconfig,
            PROMETHEUS_VALUES,
            self.prometheus_url,
            self.config.prometheus_node_port,
            self.config.scrape_interval,
            alertmanager,
            self.config.api_down_for,
        )
        self._install_chart(self.node)
        adapter.install(self.control_plane, ADAPTER_VALUES, self.config.rate_window, self.config.relist_interval)

    def down(self) -> None:
        self._stack.close()

    @property
    def api(self) -> Cluster:
        return self.control_plane.api

    def hpa(self) -> dict:
        return self.api.get(
            f"/apis/autoscaling/v2/namespaces/{self.config.namespace}/horizontalpodautoscalers/{self.fullname}"
        )

    def deployment(self) -> dict:
        return self.api.get(f"/apis/apps/v1/namespaces/{self.config.namespace}/deployments/{self.fullname}")

    def wait_at_rest(self, timeout: float = 300) -> bool:
        """Until `kubectl get hpa` shows a value for each of the HPA's metrics, not
        `<unknown>` (Prometheus has scraped the pods for a rate window, the adapter
        has relisted, and the HPA controller has synced since), and minReplicas
        pods are Ready: load offered sooner meets fewer pods than the loop at rest has."""
        return wait_until(
            lambda: at_rest(self.hpa(), self.deployment()) or None,
            "a value for each of the HPA's metrics and minReplicas pods Ready",
            timeout,
            interval=2,
        )

    def kubectl(self, *args: str) -> str:
        return kubectl(self.kubeconfig, *args)

    def prometheus_ready(self) -> bool:
        return monitoring.ready(self.prometheus_url)

    def firing_alerts(self) -> set[str]:
        """The names of the alerts firing on the operator's Prometheus."""
        return {labels["alertname"] for labels in self._firing()}

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """The labels of each firing alert of that name."""
        return [labels for labels in self._firing() if labels["alertname"] == alertname]

    def _firing(self) -> list[dict[str, str]]:
        alerts = requests.get(f"{self.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [alert["labels"] for alert in alerts if alert["state"] == "firing"]

    def _install_crds(self) -> None:
        directory = self.config.crds_dir or crds_dir()
        kubectl(self.kubeconfig, "apply", "--server-side", "-f", str(directory))
        # Polled, not `kubectl wait`: that fails outright on a CRD whose status
        # has no conditions yet, as one just created may not.
        wait_until(self._crds_established, "the monitoring.coreos.com CRDs established", 60, interval=0.5)

    def _crds_established(self) -> bool:
        crds = self.api.items("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        ours = [crd for crd in crds if crd["spec"]["group"] == "monitoring.coreos.com"]
        return bool(ours) and all(
            any(
                c["type"] == "Established" and c["status"] == "True"
                for c in crd.get("status", {}).get("conditions", [])
            )
            for crd in ours
        )

    def _install_chart(self, node: RealNode) -> None:
        exposed = {"service": {"type": "NodePort", "nodePort": self.config.node_port}}
        install_chart(
            self.kubeconfig,
            self.config.release,
            self.config.namespace,
            merged(self.config.chart_values, exposed),
            self.config.workdir / "chart-values.yaml",
        )
        # helm's --wait waits for Ready pods; a client at service_url also needs
        # kube-proxy to have routed the Service to them.
        wait_until(
            lambda: node.routed(f"{self.config.namespace}/{self.fullname}:http") or None,
            "kube-proxy routing the chart's Service to its pods",
            60,
            interval=0.5,
        )


class Timing(TypedDict):
    """StackConfig's timing fields, as keyword arguments: `StackConfig(workdir=..., **FAST_LOOP)`."""

    scrape_interval: str
    rate_window: str
    relist_interval: str
    hpa_sync_period: str
    chart_values: dict[str, Any]


# A loop fast enough for a test or a quick look: 1 s inferences, 2 s scrapes,
# a 10 s rate window (5 samples), 5 s relists and HPA syncs, short
# stabilization. Only the timing shrinks; every part and rule is the same.
FAST_LOOP = Timing(
    scrape_interval="2s",
    rate_window="10s",
    relist_interval="5s",
    hpa_sync_period="5s",
    chart_values={
        "server": {
            "workers": 1,
            # One slot per pod: 1 request/s of capacity, so the e2e test's
            # 2.5 requests/s needs 3 pods.
            "modelConcurrency": 1,
            "modelLoadSeconds": 1,
            "modelMemoryMb": 8,
            "inferenceDurationSeconds": 1,
            # Deep enough to hold the backlog of the first ~30 s of a load step
            # on one pod (the time the loop needs to add pods) without a 503.
            "maxQueue": 60,
            "gracefulShutdownSeconds": 70,
            # Three 1 s inferences, as the chart's 30 s are three of its 10 s ones.
            "maxConnectionAgeSeconds": 3,
        },
        "terminationGracePeriodSeconds": 80,
        "preStop": {"seconds": 1},
        "probes": {
            "startup": {"periodSeconds": 1, "failureThreshold": 30},
            "readiness": {"periodSeconds": 1},
        },
        "autoscaling": {
            # One pod at rest, so that the first scale-up is the load's doing.
            "minReplicas": 1,
            "maxReplicas": 8,
            "targetAverageDurationSeconds": 1.5,
            # The bare duration with the HPA's 10 % band: the timing the
            # end-to-end test's bounds and bench/calibrate.py's fast run were
            # measured with, before the chart's offset (4 s, more than this
            # whole target) and its 0.4 band on the way up.
            "durationOffsetSeconds": 0,
            "rateWindow": "10s",
            "behavior": {
                "scaleUp": {
                    "tolerance": 0.1,
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 10},
                        {"type": "Pods", "value": 4, "periodSeconds": 10},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 20,
                    "selectPolicy": "Min",
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 10}],
                },
            },
        },
        # The operator rejects a ServiceMonitor whose timeout exceeds its interval.
        "serviceMonitor": {"interval": "2s", "scrapeTimeout": "2s"},
        # The alerts' patience, in the same proportion to the 2 s scrapes.
        "prometheusRule": {"latencyFor": "40s", "maxReplicasFor": "60s", "metricAbsentFor": "20s"},
    },
)


def install_chart(
    kubeconfig: Path, release: str, namespace: str, values: dict, values_file: Path, timeout_seconds: int = 300
) -> None:
    """helm install --wait of the chart, into a namespace that enforces the
    restricted pod security profile, as docs/install.md installs it."""
    apply(
        kubeconfig,
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            }
        ],
    )
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [
            binary("helm"),
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "--timeout",
            f"{timeout_seconds}s",
            "-f",
            str(values_file),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_seconds + 30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm install failed:\n{result.stderr.strip()}")
