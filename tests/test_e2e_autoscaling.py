"""The proof of the loop: the real HPA scales the chart's Deployment on the adapter's metric.

Control plane, the node (containerd, kubelet, kube-proxy), the image built
from the Dockerfile, helm, the Prometheus Operator and the Prometheus it runs,
prometheus-adapter and locust are the real programs; locust reaches the
Service through its NodePort. The timing is FAST_LOOP's
(1 s inferences, 2 s scrapes, 10 s rate window); everything else is the
chart and adapter-values.yaml as shipped.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from localcluster.binaries import binary
from localcluster.hpa import HpaRecorder
from localcluster.load import headless_locust
from localcluster.processes import wait_until
from localcluster.stack import CHART, FAST_LOOP, LocalStack, StackConfig

TARGET_SECONDS = FAST_LOOP["chart_values"]["autoscaling"]["targetAverageDurationSeconds"]
# 5 users x 0.5 requests/s = 2.5 requests/s against pods that serve 1/s each:
# one pod queues without bound, three or more keep up.
LOAD_USERS = 5
LOAD_USER_RPS = 0.5
LOAD_SECONDS = 150


def locust_command(stack: LocalStack, users: int, seconds: int, csv_prefix: Path) -> list[str]:
    return headless_locust(
        stack.service_url, users, seconds, "--csv", str(csv_prefix), "--only-summary", "--stop-timeout", "60"
    )


LOCUST_ENV = {**os.environ, "LOAD_USER_RPS": str(LOAD_USER_RPS), "LOAD_TIMEOUT_SECONDS": "120"}


def run_locust(stack: LocalStack, csv_prefix: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        locust_command(stack, LOAD_USERS, LOAD_SECONDS, csv_prefix),
        env=LOCUST_ENV,
        capture_output=True,
        text=True,
        timeout=LOAD_SECONDS + 120,
    )


def aggregated(csv_prefix: Path) -> dict[str, str]:
    with open(f"{csv_prefix}_stats.csv") as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")


def assert_operator_configured_prometheus(stack: LocalStack) -> None:
    """Prometheus's targets and rules come from the chart's ServiceMonitor and
    PrometheusRule, by way of the operator: its scrape pool names, its rule files."""
    namespace, name = stack.config.namespace, stack.fullname
    targets = requests.get(f"{stack.prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    pools = {target["scrapePool"] for target in targets}
    apiserver = "serviceMonitor/monitoring/kube-prometheus-stack-apiserver/0"
    assert pools == {
        f"serviceMonitor/{namespace}/{name}/0",
        "serviceMonitor/monitoring/kube-state-metrics/0",
        apiserver,
    }, pools
    # The API server's scrape, with Prometheus's token against the cluster CA: KubeAPIDown reads it.
    assert [(t["health"], t["labels"]["job"]) for t in targets if t["scrapePool"] == apiserver] == [
        ("up", "apiserver")
    ], targets
    for target in targets:
        if target["scrapePool"] != f"serviceMonitor/{namespace}/{name}/0":
            continue
        labels = target["labels"]
        assert target["health"] == "up", target
        # Found through the admin port's own Service (a NodePort publishes only
        # `http`), labelled with the app's Service all the same.
        assert (labels["namespace"], labels["service"], labels["job"], labels["endpoint"]) == (
            namespace,
            name,
            name,
            "admin",
        ), labels
        assert labels["pod"].startswith(f"{name}-"), labels
    # The rule files reach Prometheus through a ConfigMap volume, which the
    # kubelet refreshes on its own clock, independent of the scrape config's.
    charts = {f"{name}.alerts", f"{name}.recording"}
    groups = wait_until(lambda: groups_holding(stack, charts), "Prometheus loading the chart's rules", 120, interval=2)
    # The stack's share of kube-prometheus-stack's default rules: Watchdog and KubeAPIDown.
    assert {group["name"] for group in groups} == charts | {"general.rules", "kubernetes-system-apiserver"}, groups
    assert all("-rulefiles-" in group["file"] and group["rules"][0]["health"] == "ok" for group in groups), groups


def rule_groups(stack: LocalStack) -> list[dict]:
    return requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]


def groups_holding(stack: LocalStack, names: set[str]) -> list[dict] | None:
    """Prometheus's rule groups once they include `names`."""
    groups = rule_groups(stack)
    return groups if names <= {group["name"] for group in groups} else None


def assert_a_broken_scrape_fires_the_absent_metric_alert(stack: LocalStack) -> None:
    """The most common mistake, a ServiceMonitor that names no port of the
    release's Services: the operator's configuration scrapes nothing, and the chart's
    InferenceMetricAbsent fires on the operator's Prometheus."""
    assert "InferenceMetricAbsent" not in stack.firing_alerts()
    stack.kubectl(
        "patch",
        "servicemonitor",
        stack.fullname,
        "-n",
        stack.config.namespace,
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/endpoints/0/port", "value": "no-such-port"}]',
    )
    # The kubelet's Secret refresh (about a minute), then metricAbsentFor (20 s).
    wait_until(
        lambda: "InferenceMetricAbsent" in stack.firing_alerts() or None,
        "InferenceMetricAbsent firing",
        240,
        interval=2,
    )


def assert_overload_at_max_replicas_fires_the_latency_alert(stack: LocalStack, tmp_path: Path) -> None:
    """What the latency alert is for: demand the HPA may not meet. maxReplicas
    lowered to 1 with `helm upgrade` (the value a user would change), then
    1.5 requests/s against the one pod's 1/s: requests queue, the average
    climbs past the target, and InferenceLatencyAboveTarget fires once it has
    stayed there for latencyFor (40 s). kube-state-metrics reports the HPA at
    its maximum, and InferenceHPAAtMaxReplicas fires after maxReplicasFor (60 s)."""
    assert not {"InferenceLatencyAboveTarget", "InferenceHPAAtMaxReplicas"} & stack.firing_alerts()
    helm = subprocess.run(
        [
            binary("helm"),
            "upgrade",
            stack.config.release,
            str(CHART),
            "-n",
            stack.config.namespace,
            "--kubeconfig",
            str(stack.kubeconfig),
            "--reuse-values",
            "--set",
            "autoscaling.maxReplicas=1",
            "--wait",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert helm.returncode == 0, helm.stderr
    overload = subprocess.Popen(
        locust_command(stack, 3, 180, tmp_path / "overload"),
        env=LOCUST_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wanted = {"InferenceLatencyAboveTarget", "InferenceHPAAtMaxReplicas"}
        wait_until(lambda: wanted <= stack.firing_alerts() or None, f"{sorted(wanted)} firing", 150, interval=2)
        hpa = stack.hpa()
        assert hpa["spec"]["maxReplicas"] == hpa["status"]["currentReplicas"] == 1, hpa["status"]
    finally:
        overload.terminate()
        overload.wait(timeout=90)


@pytest.mark.cluster
def test_hpa_scales_out_under_load_and_back_in_without_failed_requests(tmp_path):
    config = StackConfig(
        workdir=tmp_path / "stack",
        **FAST_LOOP,
    )
    with LocalStack(config) as stack:
        # The adapter serves the metric for the idle pod: 0, not <unknown>. The
        # operator's new configuration reaches Prometheus through a Secret volume,
        # which the kubelet refreshes within about a minute.
        stack.wait_at_rest(240)
        assert_operator_configured_prometheus(stack)
        table = stack.kubectl("get", "hpa", "-n", config.namespace)
        assert "<unknown>" not in table, table
        # The External-metric variant's rule is served as well (autoscaling.metric.type=External).
        external = json.loads(
            stack.kubectl(
                "get",
                "--raw",
                f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{config.namespace}/"
                f"inference_request_duration_seconds_avg_external?labelSelector=service%3D{stack.fullname}",
            )
        )
        assert [item["value"] for item in external["items"]] == ["0"], external

        recorder = HpaRecorder(stack.hpa)
        recorder.start()
        result = run_locust(stack, tmp_path / "locust")
        load_ended = recorder.elapsed()
        wait_until(
            lambda: recorder.samples[-1].replicas == 1 and recorder.samples[-1].desired == 1,
            "scale-in to minReplicas",
            240,
            interval=2,
        )
        samples = recorder.stop()
        assert_overload_at_max_replicas_fires_the_latency_alert(stack, tmp_path)
        assert_a_broken_scrape_fires_the_absent_metric_alert(stack)

    timeline = " ".join(f"{s.at:.0f}s:{s.replicas}/{s.desired}@{s.metric}/{s.second}" for s in samples)
    print("HPA timeline (seconds: current/desired replicas @ duration/slot utilization):", timeline)
    during_load = [s for s in samples if s.at <= load_ended]
    peak = max(s.replicas for s in during_load)
    assert peak >= 3, timeline
    reached_peak = next(s.at for s in during_load if s.replicas == peak)
    back_under = [s for s in during_load if s.at > reached_peak and s.metric is not None and s.metric < TARGET_SECONDS]
    assert back_under, "the per-pod average never came back under the target while loaded"

    stats = aggregated(tmp_path / "locust")
    assert int(stats["Request Count"]) > LOAD_USERS * LOAD_USER_RPS * LOAD_SECONDS * 0.7, stats
    assert stats["Failure Count"] == "0", result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
