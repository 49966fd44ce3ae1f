"""`inferscale doctor` on the real stack: healthy when it is, and each induced
break reported as the first broken link, with its fix.

The breaks are the ones users hit: the HPA asking for a metric nobody serves,
the adapter stopped, an APIService pointing nowhere, a scrape blocked on the
network, and a ServiceMonitor whose `release` label the Prometheus does not
select. Each is undone before the next, and the doctor must say healthy again
in between, so every report is about one break only.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import contextmanager
from http import HTTPStatus

import pytest
import yaml

from inferscale.doctor.kube import ApiError, Cluster, PrometheusUnavailable
from inferscale.doctor.pipeline import (
    Broken,
    Walk,
    adapter_rule_answers,
    hpa_metrics,
    hpa_scaling,
    metrics_api_serves,
    pods_ready,
    served_name,
    service_monitor_selected,
    targets_up,
    walk_pipeline,
)
from inferscale.doctor.selectors import describe, matches
from localcluster.loopback import LOOPBACK
from localcluster.node import run
from localcluster.pki import Pki
from localcluster.processes import wait_until
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig, merged

ADAPTER = ("-n", "monitoring", "deployment/prometheus-adapter")
API_SERVICE = "v1beta1.custom.metrics.k8s.io"
PROMETHEUS = ("-n", "monitoring", "prometheus/kube-prometheus-stack-prometheus")
# The scrape's path: Prometheus's pod to the app pod's admin port, across the node's bridge.
BLOCK_SCRAPES = ("FORWARD", "-p", "tcp", "--dport", "8081", "-j", "REJECT", "--reject-with", "tcp-reset")
DURATION = "inference_request_duration_seconds_avg"
UTILIZATION = "inference_slot_utilization"
# The duration less the offset the chart's PrometheusRule records: what the chart's HPA reads by default.
OFFSET_DURATION = "inference_request_duration_seconds_avg_minus_offset"
# The fast loop through an offset under its 1.5 s target, as the chart's defaults read
# theirs: the recorded offset takes the operator, Prometheus's rule evaluation and the
# adapter's offset rule, each a link the doctor checks on the way to the HPA.
FAST_LOOP_WITH_OFFSET = {
    **FAST_LOOP,
    "chart_values": merged(FAST_LOOP["chart_values"], {"autoscaling": {"durationOffsetSeconds": 0.5}}),
}


def run_doctor(stack: LocalStack, *options: str) -> subprocess.CompletedProcess:
    """`inferscale doctor` on the stack's release, as a user runs it."""
    cluster = ["--kubeconfig", str(stack.kubeconfig), "-n", stack.config.namespace, "--release", stack.config.release]
    command = [sys.executable, "-m", "inferscale.cli", "doctor", *cluster, *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def doctor(stack: LocalStack) -> tuple[int, dict]:
    result = run_doctor(stack, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def broken_link(stack: LocalStack) -> dict | None:
    code, report = doctor(stack)
    assert (code == 0) == report["healthy"], report
    return None if report["healthy"] else report["links"][-1]


def wait_for_break(stack: LocalStack, link: str, timeout: float = 120) -> dict:
    return wait_until(
        lambda: (found := broken_link(stack)) and found["link"] == link and found,
        f"doctor reporting {link!r} broken",
        timeout,
        interval=2,
    )


def wait_for_healthy(stack: LocalStack, timeout: float = 240) -> dict:
    wait_until(lambda: broken_link(stack) is None, "doctor reporting healthy", timeout, interval=3)
    return doctor(stack)[1]


def iptables_on_node(*args: str) -> None:
    run("iptables", *args, netns=True)


@contextmanager
def broken(stack: LocalStack, break_args: tuple, mend_args: tuple):
    stack.kubectl(*break_args)
    try:
        yield
    finally:
        stack.kubectl(*mend_args)


@pytest.mark.cluster
def test_doctor_says_healthy_and_names_each_broken_link_with_its_fix(tmp_path):
    # The chart's HPA has two metrics (duration, slot utilization): doctor checks each.
    with LocalStack(StackConfig(workdir=tmp_path / "stack", **FAST_LOOP_WITH_OFFSET)) as stack:
        stack.wait_at_rest(240)
        # The operator's rule files and configuration reach Prometheus within a
        # minute or two; InferenceMetricAbsent may fire until the first scrapes.
        report = wait_for_healthy(stack)
        links = {link["link"]: link["detail"] for link in report["links"]}
        assert list(links) == [
            "pods ready",
            "ServiceMonitor selected",
            "targets up",
            "request-duration series",
            "adapter rule per pod",
            "metrics API",
            "HPA",
            "alerts",
        ]
        # The real adapter serves the slot utilization for the pod, and the real HPA reads both.
        for metric in (OFFSET_DURATION, UTILIZATION):
            assert f"the adapter's query for {metric} returns a value for each" in links["adapter rule per pod"]
            assert f"custom.metrics.k8s.io serves {metric} for every ready pod" in links["metrics API"]
            assert f"{metric} " in links["HPA"] and "against target" in links["HPA"], links["HPA"]
        assert "against target 750m" in links["HPA"] or "against target 0.75" in links["HPA"], links["HPA"]
        # The real HPA reads the idle pod's 0 s less the recorded offset.
        path = f"/apis/autoscaling/v2/namespaces/{stack.config.namespace}/horizontalpodautoscalers/{stack.fullname}"
        status = stack.api.get(path)["status"]
        [reading] = [
            m["pods"]["current"]["averageValue"]
            for m in status["currentMetrics"]
            if m["pods"]["metric"]["name"] == OFFSET_DURATION
        ]
        assert reading == "-500m", status
        assert report["budget"]["scrape interval"] == "2s"
        assert report["budget"]["rate window"] == "10s"
        assert report["budget"]["relist interval"] == "5s"
        text = run_doctor(stack)
        assert text.returncode == 0 and text.stdout.rstrip().endswith("healthy"), text.stdout + text.stderr

        hpa = stack.fullname
        # A typo in either metric's name: the second one too, which alone would stop every scale-in.
        for index, name in enumerate((OFFSET_DURATION, UTILIZATION)):
            path = f"/spec/metrics/{index}/pods/metric/name"
            wrong_metric = json.dumps([{"op": "replace", "path": path, "value": "inference_typo"}])
            right_metric = json.dumps([{"op": "replace", "path": path, "value": name}])
            with broken(
                stack,
                ("patch", "hpa", hpa, "-n", stack.config.namespace, "--type=json", "-p", wrong_metric),
                ("patch", "hpa", hpa, "-n", stack.config.namespace, "--type=json", "-p", right_metric),
            ):
                found = wait_for_break(stack, "adapter rule per pod")
                assert "'inference_typo'" in found["detail"] and UTILIZATION in found["detail"], found
                assert "autoscaling.metric.name" in found["fix"]
            wait_for_healthy(stack)

        with broken(stack, ("scale", "--replicas=0", *ADAPTER), ("scale", "--replicas=1", *ADAPTER)):
            found = wait_for_break(stack, "metrics API")
            assert "prometheus-adapter (monitoring/prometheus-adapter) has no ready pod" in found["detail"]
            assert "rollout status deploy/prometheus-adapter" in found["fix"]
        wait_for_healthy(stack)

        nowhere = '{"spec": {"service": {"name": "prometheus-adapter-gone"}}}'
        back = '{"spec": {"service": {"name": "prometheus-adapter"}}}'
        with broken(
            stack,
            ("patch", "apiservice", API_SERVICE, "--type=merge", "-p", nowhere),
            ("patch", "apiservice", API_SERVICE, "--type=merge", "-p", back),
        ):
            found = wait_for_break(stack, "metrics API")
            assert f"APIService {API_SERVICE} is not Available: ServiceNotFound" in found["detail"]
            assert f"kubectl get apiservice {API_SERVICE}" in found["fix"]
        wait_for_healthy(stack)

        iptables_on_node("-I", *BLOCK_SCRAPES)
        try:
            found = wait_for_break(stack, "targets up")
            assert "1 of 1 targets down" in found["detail"], found
            assert "NetworkPolicies" in found["fix"]
        finally:
            iptables_on_node("-D", *BLOCK_SCRAPES)
        wait_for_healthy(stack)

        # A rollout whose new pod no node has room for: not a broken link (the
        # old pod serves and is scraped), but the first line says it, with the
        # scheduler's reason, so a user sees why the HPA's count is not running.
        deployment = ("deployment/" + hpa, "-n", stack.config.namespace)
        server = {"name": "server", "resources": {"requests": {"cpu": "1000"}}}
        no_room = json.dumps({"spec": {"template": {"spec": {"containers": [server]}}}})
        stack.kubectl("patch", *deployment, "--type=strategic", "-p", no_room)
        try:
            first = wait_until(
                lambda: "unschedulable" in (link := doctor(stack)[1]["links"][0])["detail"] and link,
                "doctor naming the unschedulable pod",
                60,
                interval=2,
            )
            assert first["ok"] and "1 Pending, unschedulable: 0/1 nodes are available" in first["detail"], first
            assert "Insufficient cpu" in first["detail"], first
        finally:
            stack.kubectl("rollout", "undo", *deployment)
        wait_for_healthy(stack)

        # Last, as nothing undoes it quickly: the chart's selector without
        # prometheus-values.yaml's select-all, and a release label it does not match.
        stack.kubectl(
            "patch",
            *PROMETHEUS,
            "--type=merge",
            "-p",
            '{"spec": {"serviceMonitorSelector": {"matchLabels": {"release": "kube-prometheus-stack"}}}}',
        )
        stack.kubectl("label", "--overwrite", "servicemonitor", hpa, "-n", stack.config.namespace, "release=monitoring")
        found = wait_for_break(stack, "ServiceMonitor selected", timeout=30)
        assert "selects release=kube-prometheus-stack" in found["detail"], found
        assert "serviceMonitor.additionalLabels" in found["fix"]


@pytest.mark.parametrize(
    "selector, labels, selected",
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"release": "kps"}}, {"release": "kps", "x": "y"}, True),
        ({"matchLabels": {"release": "kps"}}, {"release": "other"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_label_selectors_select_as_kubernetes_does(selector, labels, selected):
    assert matches(selector, labels) is selected


def test_an_unset_selector_is_the_callers_to_interpret():
    with pytest.raises(ValueError, match="unset selector"):
        matches(None, {})


def test_selectors_are_described_as_kubectl_spells_them():
    assert (
        describe(
            {
                "matchLabels": {"release": "kps"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "gone", "operator": "DoesNotExist"},
                ],
            }
        )
        == "release=kps,tier in (a,b),!gone"
    )
    assert describe({}) == "(everything)"


class FakePrometheus:
    """Targets of the given healths, of pods svc-0, svc-1, ... in namespace ns.

    `query` records each query in `queries` and answers as Prometheus would: a
    value for each target's pod that the query's namespace matcher and pod
    regex select, labelled by what it groups by; the pods in `without` have
    none (too new for two samples). A query without those matchers selects nothing."""

    address = "prometheus-operated:web"

    def __init__(self, *healths, without: tuple[str, ...] = (), recording: tuple[str, ...] = ()):
        self.without = set(without)
        self.recording = recording  # the recording rules it has loaded, by the series they write
        self.queries: list[str] = []
        self.targets = [
            {
                "health": h,
                "labels": {"namespace": "ns", "service": "svc", "pod": f"svc-{i}"},
                "scrapePool": "serviceMonitor/ns/svc/0",
                "scrapeUrl": f"http://10.0.0.{i}:8081/metrics",
                "lastError": "connection refused" if h == "down" else "",
            }
            for i, h in enumerate(healths)
        ]

    def api(self, path, **params):
        if path == "rules":
            return {"groups": [{"name": "svc.recording", "rules": [{"name": name} for name in self.recording]}]}
        return {"activeTargets": self.targets}

    def query(self, promql):
        self.queries.append(promql)
        namespace = re.search(r'\bnamespace="([^"]*)"', promql)
        pods = re.search(r'\bpod=~"([^"]*)"', promql)
        group_by = re.search(r"\bby \(([^)]*)\)", promql)
        if not (namespace and pods and group_by):
            return []
        labels = [label.strip() for label in group_by.group(1).split(",")]
        selected = [
            target["labels"]
            for target in self.targets
            if target["labels"]["namespace"] == namespace.group(1)
            and re.fullmatch(pods.group(1), target["labels"]["pod"])
            and target["labels"]["pod"] not in self.without
        ]
        return [{"metric": {label: series[label] for label in labels}, "value": [0, "1"]} for series in selected]


def targets_walk(*healths) -> Walk:
    return Walk(
        cluster=None,
        namespace="ns",
        release="svc",
        deployment={"metadata": {"name": "svc"}},
        prometheus=FakePrometheus(*healths),
    )


def test_targets_a_scale_up_just_added_are_not_down():
    assert targets_up(targets_walk("up", "unknown", "unknown")) == (
        "1 targets up in scrape pool serviceMonitor/ns/svc/0, 2 not scraped yet (new pods)"
    )
    with pytest.raises(Broken, match="1 of 3 targets down .svc-2: connection refused"):
        targets_up(targets_walk("up", "unknown", "down"))
    with pytest.raises(Broken, match="none of the 2 targets scraped yet"):
        targets_up(targets_walk("unknown", "unknown"))


class FakeCluster:
    def __init__(self, pods):
        self.pods = pods

    def objects(self, path, **params):
        if path.endswith("/deployments"):
            return [
                {
                    "metadata": {"name": "svc"},
                    "spec": {
                        "replicas": len(self.pods),
                        "selector": {"matchLabels": {"app": "svc"}},
                        "template": {"spec": {"containers": [{"name": "server"}]}},
                    },
                }
            ]
        return self.pods


def pod(name, *conditions):
    return {
        "metadata": {"name": name},
        "spec": {},
        "status": {"conditions": [{"type": kind, "status": status, **extra} for kind, status, extra in conditions]},
    }


RUNNING = (("PodScheduled", "True", {}), ("Ready", "True", {}))
NO_ROOM = (
    ("PodScheduled", "False", {"reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}),
)


def test_pods_the_node_has_no_room_for_are_named_with_the_schedulers_reason():
    walk = Walk(
        cluster=FakeCluster([pod("svc-a", *RUNNING), pod("svc-b", *RUNNING), pod("svc-c", *NO_ROOM)]),
        namespace="ns",
        release="svc",
    )
    assert pods_ready(walk) == (
        "2 of 3 pods of Deployment svc ready; 1 Pending, unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
    )
    assert pods_ready(Walk(cluster=FakeCluster([pod("svc-a", *RUNNING)]), namespace="ns", release="svc")) == (
        "1 of 1 pods of Deployment svc ready"
    )
    with pytest.raises(Broken, match="none of the 1 pods .* ready; 1 Pending, unschedulable: 0/1 nodes"):
        pods_ready(Walk(cluster=FakeCluster([pod("svc-c", *NO_ROOM)]), namespace="ns", release="svc"))


def two_metric_hpa(*current: tuple[str, str]) -> dict:
    """The chart's HPA, its status holding `current` (name, value) pairs."""

    def spec(name, target):
        return {
            "type": "Pods",
            "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": target}},
        }

    conditions = [{"type": kind, "status": "True"} for kind in ("AbleToScale", "ScalingActive")]
    return {
        "metadata": {"name": "svc"},
        "spec": {"metrics": [spec(DURATION, "12"), spec(UTILIZATION, "700m")]},
        "status": {
            "currentReplicas": 3,
            "desiredReplicas": 3,
            "conditions": conditions,
            "currentMetrics": [
                {"type": "Pods", "pods": {"metric": {"name": name}, "current": {"averageValue": value}}}
                for name, value in current
            ],
        },
    }


def test_the_hpa_link_reads_every_metric_and_breaks_on_one_without_a_value():
    hpa = two_metric_hpa((DURATION, "10500m"), (UTILIZATION, "650m"))
    walk = Walk(cluster=None, namespace="ns", release="svc", hpa=hpa, metrics=hpa_metrics(hpa))
    assert hpa_scaling(walk) == (
        f"HPA svc: 3 replicas (desired 3), current value {DURATION} 10500m against "
        f"target 12, {UTILIZATION} 650m against target 700m"
    )
    walk.hpa = two_metric_hpa((DURATION, "10500m"))
    with pytest.raises(Broken, match=f"no current value of {UTILIZATION} yet"):
        hpa_scaling(walk)


class CannedCluster(Cluster):
    """Answers each GET from `answers`: a path's object, its list's items, or an
    ApiError to raise. Lists are filtered by a labelSelector of `key=value`
    terms as the API server filters them (other selectors are only recorded,
    in `asked`, with every query). What Cluster builds on its GETs
    (`object_or_none`) is the real thing."""

    def __init__(self, answers: dict):  # no super(): there is no API server to configure
        self.answers = answers
        self.asked: dict[str, dict] = {}

    def get(self, path, **query):
        self.asked[path] = query
        if path not in self.answers:
            raise AssertionError(f"doctor asked for {path}, which the test did not expect")
        answer = self.answers[path]
        if isinstance(answer, ApiError):
            raise answer
        if isinstance(answer, list):
            return [item for item in answer if _labelled(item, query.get("labelSelector", ""))]
        return answer

    items = objects = object = get


def _labelled(item: dict, selector: str) -> bool:
    terms = [term.split("=", 1) for term in selector.split(",") if term]
    if not all(len(term) == 2 for term in terms):
        return True
    return matches({"matchLabels": dict(terms)}, item.get("metadata", {}).get("labels", {}))


def not_found(path: str, message: str) -> ApiError:
    return ApiError(path, 404, json.dumps({"kind": "Status", "code": 404, "message": message}))


RELEASE = "inferscale-stack"
DEPLOYMENTS = "/apis/apps/v1/namespaces/ns/deployments"
PODS = "/api/v1/namespaces/ns/pods"
SERVICE_MONITORS = "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors"
PROMETHEUSES = "/apis/monitoring.coreos.com/v1/prometheuses"


def chart_labels(chart: str = "inferscale") -> dict:
    """The selector labels a chart of the umbrella release gives its objects."""
    return {"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": RELEASE}


def app_deployment(name: str, chart: str = "inferscale", selector: dict | None = None) -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": chart_labels(chart)},
        "spec": {
            "replicas": 1,
            "selector": selector or {"matchLabels": chart_labels(chart)},
            "template": {"metadata": {"labels": chart_labels(chart)}, "spec": {"containers": [{"name": "c"}]}},
        },
    }


def app_pod(name: str) -> dict:
    return pod(name, *RUNNING) | {"metadata": {"name": name, "labels": chart_labels()}}


def test_pods_are_listed_by_a_selector_of_expressions_too():
    selector = {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["inferscale"]}]}
    cluster = CannedCluster(
        {DEPLOYMENTS: [app_deployment("inferscale", selector=selector)], PODS: [app_pod("inferscale-a")]}
    )
    assert pods_ready(Walk(cluster, "ns", RELEASE)) == "1 of 1 pods of Deployment inferscale ready"
    assert cluster.asked[PODS] == {"labelSelector": "app.kubernetes.io/name in (inferscale)"}


def test_of_an_umbrella_release_only_the_charts_own_objects_are_walked():
    """kube-prometheus-stack's Grafana shares the release's instance label, and its name sorts first."""
    grafana = app_deployment(f"{RELEASE}-grafana", chart="grafana")
    deployments = [grafana, app_deployment("inferscale")]
    cluster = CannedCluster({DEPLOYMENTS: deployments, PODS: [app_pod("inferscale-a")]})
    assert pods_ready(Walk(cluster, "ns", RELEASE)) == "1 of 1 pods of Deployment inferscale ready"
    grafanas = monitoring_answers(service_monitor(f"{RELEASE}-grafana", chart="grafana"), service_monitor("inferscale"))
    assert service_monitor_selected(Walk(CannedCluster(grafanas), "ns", RELEASE)) == (
        "ServiceMonitor inferscale is selected by Prometheus monitoring/kps"
    )


def test_a_release_with_a_name_override_is_found_by_the_name_it_was_given():
    renamed = pod("scorer-a", *RUNNING) | {"metadata": {"name": "scorer-a", "labels": chart_labels("scorer")}}
    cluster = CannedCluster({DEPLOYMENTS: [app_deployment("scorer", chart="scorer")], PODS: [renamed]})
    with pytest.raises(Broken, match="no Deployment in namespace 'ns' has the chart's labels") as unnamed:
        pods_ready(Walk(cluster, "ns", RELEASE))
    assert "pass it as --chart-name" in unnamed.value.fix
    assert pods_ready(Walk(cluster, "ns", RELEASE, "scorer")) == "1 of 1 pods of Deployment scorer ready"


def test_doctor_does_not_guess_between_two_objects_with_the_charts_labels():
    twins = CannedCluster({DEPLOYMENTS: [app_deployment("inferscale"), app_deployment("inferscale-old")]})
    twin_names = "2 Deployments in namespace ns have the chart's labels .*: inferscale, inferscale-old"
    with pytest.raises(Broken, match=twin_names):
        pods_ready(Walk(twins, "ns", RELEASE))
    twin_monitors = monitoring_answers(service_monitor("inferscale"), service_monitor("inferscale-old"))
    with pytest.raises(Broken, match="2 ServiceMonitors .*: inferscale, inferscale-old"):
        service_monitor_selected(Walk(CannedCluster(twin_monitors), "ns", RELEASE))


def service_monitor(name: str, chart: str = "inferscale", endpoints: list | None = None) -> dict:
    labels = chart_labels(chart)
    endpoints = [{"port": "admin", "interval": "10s"}] if endpoints is None else endpoints
    spec = {"selector": {"matchLabels": labels}, "endpoints": endpoints}
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def monitoring_answers(*monitors: dict, selector: dict | None = None) -> dict:
    """A Prometheus in namespace monitoring selecting every ServiceMonitor (or those `selector` selects)."""
    prometheus = {
        "metadata": {"name": "kps", "namespace": "monitoring"},
        "spec": {"serviceMonitorSelector": selector or {}, "serviceMonitorNamespaceSelector": {}},
    }
    return {
        SERVICE_MONITORS: list(monitors),
        "/api/v1/namespaces/ns": {"metadata": {"name": "ns"}},
        PROMETHEUSES: [prometheus],
    }


PROMETHEUS_TARGETS = "/api/v1/namespaces/monitoring/services/prometheus-operated:web/proxy/api/v1/targets"


@pytest.mark.parametrize(
    "status, body, detail",
    [
        (
            503,
            {"kind": "Status", "code": 503, "message": "no endpoints available for service prometheus-operated"},
            "does not answer through the API server's proxy: HTTP 503 (no endpoints available for service",
        ),
        (
            404,
            {"kind": "Status", "code": 404, "message": 'services "prometheus-operated" not found'},
            "does not answer through the API server's proxy: HTTP 404 (services",
        ),
        (
            503,
            {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"},
            "fails: HTTP 503 (query timed out",
        ),
    ],
    ids=["no-pod", "no-service", "its-own-timeout"],
)
def test_a_prometheus_that_does_not_answer_is_the_broken_link_not_a_cluster_doctor_cannot_read(status, body, detail):
    down = ApiError(PROMETHEUS_TARGETS, status, json.dumps(body))
    answers = monitoring_answers(service_monitor("inferscale")) | {
        DEPLOYMENTS: [app_deployment("inferscale")],
        PODS: [app_pod("inferscale-a")],
        PROMETHEUS_TARGETS: down,
    }
    findings = walk_pipeline(Walk(CannedCluster(answers), "ns", RELEASE))
    assert [(finding.link, finding.ok) for finding in findings] == [
        ("pods ready", True),
        ("ServiceMonitor selected", True),
        ("targets up", False),
    ]
    assert findings[-1].detail.startswith(f"Prometheus (prometheus-operated.monitoring.svc) {detail}")
    assert "kubectl -n monitoring get pods -l app.kubernetes.io/name=prometheus" in findings[-1].fix


def test_a_service_monitor_without_endpoints_is_named():
    answers = monitoring_answers(service_monitor("inferscale", endpoints=[]))
    with pytest.raises(Broken, match="ServiceMonitor inferscale has no endpoints"):
        service_monitor_selected(Walk(CannedCluster(answers), "ns", RELEASE))


def test_a_cluster_without_the_operators_crds_is_told_to_install_them():
    answers = monitoring_answers() | {SERVICE_MONITORS: not_found(SERVICE_MONITORS, "404 page not found")}
    with pytest.raises(Broken, match="does not serve the Prometheus Operator's monitoring.coreos.com/v1") as broken:
        service_monitor_selected(Walk(CannedCluster(answers), "ns", RELEASE))
    assert "install kube-prometheus-stack" in broken.value.fix


def test_a_prometheus_whose_selector_has_an_unknown_operator_selects_nothing_and_says_why():
    typo = {"matchExpressions": [{"key": "release", "operator": "in", "values": ["kps"]}]}
    answers = monitoring_answers(service_monitor("inferscale"), selector=typo)
    with pytest.raises(Broken, match="selects nothing: its serviceMonitorSelector is invalid, .*operator 'in'"):
        service_monitor_selected(Walk(CannedCluster(answers), "ns", RELEASE))


ADAPTER_RULE = {
    "seriesQuery": f'{DURATION.removesuffix("_avg")}_count{{namespace!="",pod!=""}}',
    "name": {"matches": "^(.*)_count$", "as": "${1}_avg"},
    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
    "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[40s])) by (<<.GroupBy>>)",
}
CONFIG_MAP = "/api/v1/namespaces/monitoring/configmaps/prometheus-adapter"
CUSTOM_METRICS = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/ns/pods/*/{DURATION}"


def adapter_deployment(container: dict, volume: dict) -> dict:
    """prometheus-adapter as its chart installs it, `container` and its ConfigMap volume's `volume` laid over it."""
    container = {
        "name": "prometheus-adapter",
        "args": ["--config=/etc/adapter/config.yaml", "--metrics-relist-interval=30s"],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/adapter"}],
    } | container
    return {
        "metadata": {"name": "prometheus-adapter", "namespace": "monitoring"},
        "spec": {
            "selector": {"matchLabels": {"app": "adapter"}},
            "template": {
                "metadata": {"labels": {"app": "adapter"}},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": "prometheus-adapter"} | volume}],
                },
            },
        },
        "status": {"readyReplicas": 1},
    }


def config_map(data: dict | None) -> dict:
    named = {"metadata": {"name": "prometheus-adapter"}}
    return named if data is None else named | {"data": data}


ADAPTER_CONFIG = config_map({"config.yaml": yaml.safe_dump({"rules": [ADAPTER_RULE]})})


def adapter_walk(
    container: dict | None = None,
    volume: dict | None = None,
    config: dict | ApiError = ADAPTER_CONFIG,
    ready_pods: tuple[str, ...] = ("svc-0",),
):
    """The walk at the adapter's link: `ready_pods` (Prometheus scrapes one more,
    not ready), an HPA on DURATION, and the adapter behind its APIService,
    reading `config` (its ConfigMap's answer)."""
    hpa = {
        "metadata": {"name": "inferscale"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "inferscale"},
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": DURATION}, "target": {"averageValue": "12"}}}],
        },
    }
    adapter_service = {"namespace": "monitoring", "name": "prometheus-adapter"}
    answers = {
        "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers": [hpa],
        f"/apis/apiregistration.k8s.io/v1/apiservices/{API_SERVICE}": {
            "metadata": {"name": API_SERVICE},
            "spec": {"group": "custom.metrics.k8s.io", "service": adapter_service},
        },
        "/api/v1/namespaces/monitoring/services/prometheus-adapter": {
            "metadata": {"name": "prometheus-adapter"},
            "spec": {"selector": {"app": "adapter"}},
        },
        "/apis/apps/v1/namespaces/monitoring/deployments": [adapter_deployment(container or {}, volume or {})],
        CONFIG_MAP: config,
    }
    return Walk(
        cluster=CannedCluster(answers),
        namespace="ns",
        release=RELEASE,
        deployment=app_deployment("inferscale"),
        ready_pods=list(ready_pods),
        prometheus=FakePrometheus(*["up"] * (len(ready_pods) + 1)),
    )


def adapter_query(*pods: str) -> str:
    """ADAPTER_RULE's metricsQuery as the adapter fills it in for the HPA's `pods` in namespace ns."""
    matchers = f'namespace="ns",pod=~"{"|".join(pods)}"'
    return f"sum(rate(inference_request_duration_seconds_count{{{matchers}}}[40s])) by (pod)"


@pytest.mark.parametrize(
    "container, volume",
    [
        ({"args": ["--config", "/etc/adapter/config.yaml"]}, {}),
        ({"command": ["/adapter", "--config=/etc/adapter/config.yaml"], "args": ["--v=2"]}, {}),
        ({"volumeMounts": [{"name": "config", "mountPath": "/etc/adapter/"}]}, {}),
        ({"volumeMounts": [{"name": "config", "mountPath": "/etc/adapter/config.yaml", "subPath": "config.yaml"}]}, {}),
        ({"args": ["--config=/etc/adapter/adapter.yaml"]}, {"items": [{"key": "config.yaml", "path": "adapter.yaml"}]}),
        (
            {"volumeMounts": [{"name": "config", "mountPath": "/etc/adapter", "subPath": "conf"}]},
            {"items": [{"key": "config.yaml", "path": "conf/config.yaml"}]},
        ),
    ],
    ids=["flag-and-value", "in-command", "mount-path-with-slash", "sub-path", "key-renamed-by-items", "sub-path-dir"],
)
def test_the_adapters_rules_are_read_however_its_config_is_passed_and_mounted(container, volume):
    walk = adapter_walk(container, volume)
    assert adapter_rule_answers(walk) == (
        f"the adapter's query for {DURATION} returns a value for each of the 1 ready pods"
    )
    assert walk.prometheus.queries == [adapter_query("svc-0")]


def test_the_adapters_query_is_sent_for_the_ready_pods_and_a_pod_without_a_value_is_named():
    walk = adapter_walk(ready_pods=("svc-0", "svc-1", "svc-2"))
    assert adapter_rule_answers(walk) == (
        f"the adapter's query for {DURATION} returns a value for each of the 3 ready pods"
    )
    assert walk.prometheus.queries == [adapter_query("svc-0", "svc-1", "svc-2")]
    walk.prometheus = FakePrometheus("up", "up", "up", "up", without=("svc-1",))
    with pytest.raises(Broken, match=f"the adapter's query for {DURATION} has no value for pods svc-1$"):
        adapter_rule_answers(walk)
    assert walk.prometheus.queries == [adapter_query("svc-0", "svc-1", "svc-2")]


def test_a_recorded_series_no_pod_has_is_traced_to_the_rule_prometheus_has_not_loaded():
    """The chart's offset rule reads a series its PrometheusRule records: while
    Prometheus has not loaded that rule no pod has a value, and the link names
    the rule; once it has, a pod without a value is a pod too new."""
    recorded = "namespace_pod:inference_request_duration_seconds:hpa_offset"
    rule = ADAPTER_RULE | {
        "seriesQuery": f'{recorded}{{namespace!="",pod!=""}}',
        "name": {"matches": f"^{recorded}$", "as": DURATION},
    }
    walk = adapter_walk(
        config=config_map({"config.yaml": yaml.safe_dump({"rules": [rule]})}), ready_pods=("svc-0", "svc-1")
    )
    walk.prometheus = FakePrometheus("up", "up", "up", without=("svc-0", "svc-1"))
    with pytest.raises(Broken, match=f"Prometheus has not loaded the rule that records {recorded}, ") as broken:
        adapter_rule_answers(walk)
    assert "ruleSelector" in broken.value.fix and "ruleNamespaceSelector" in broken.value.fix
    walk.prometheus = FakePrometheus("up", "up", "up", without=("svc-1",), recording=(recorded,))
    with pytest.raises(Broken, match=f"the adapter's query for {DURATION} has no value for pods svc-1$"):
        adapter_rule_answers(walk)
    # A scraped series never sends the doctor to the rules.
    scraped = adapter_walk(ready_pods=("svc-0", "svc-1"))
    scraped.prometheus = FakePrometheus("up", "up", "up", without=("svc-1",))
    with pytest.raises(Broken, match="has no value for pods svc-1$"):
        adapter_rule_answers(scraped)


@pytest.mark.parametrize(
    "volume, config, named",
    [
        ({}, config_map({"adapter.yaml": "rules: []"}), "prometheus-adapter has no key config.yaml"),
        ({}, config_map(None), "prometheus-adapter has no key config.yaml"),
        ({}, not_found(CONFIG_MAP, "not found"), "ConfigMap monitoring/prometheus-adapter, where .* does not exist"),
        ({"items": [{"key": "other", "path": "other.yaml"}]}, ADAPTER_CONFIG, "whose items do not hold it"),
        ({}, config_map({"config.yaml": ""}), "key config.yaml holds no adapter configuration"),
        ({}, config_map({"config.yaml": "rules: [\n"}), "key config.yaml is not YAML: while parsing"),
        ({}, config_map({"config.yaml": "rules: [{seriesQuery: up}]"}), r"rules\[0\] needs a seriesQuery and"),
        (
            {},
            config_map({"config.yaml": yaml.safe_dump({"rules": [ADAPTER_RULE | {"name": {"matches": "(.*)_(.*)"}}]})}),
            r"rules\[0\] has a name.matches of 2 capture groups and no name.as, which the adapter refuses",
        ),
    ],
    ids=[
        "key-missing",
        "no-data",
        "no-config-map",
        "items-without-it",
        "empty",
        "not-yaml",
        "rule-without-query",
        "groups-without-as",
    ],
)
def test_an_adapter_config_doctor_cannot_read_is_a_finding_naming_its_config_map(volume, config, named):
    with pytest.raises(Broken, match=named) as broken:
        adapter_rule_answers(adapter_walk(volume=volume, config=config))
    assert "ConfigMap monitoring/prometheus-adapter" in broken.value.detail


def adapter_pod_spec(walk: Walk) -> dict:
    return walk.cluster.answers["/apis/apps/v1/namespaces/monitoring/deployments"][0]["spec"]["template"]["spec"]


def test_the_adapter_is_read_in_its_own_container_behind_a_sidecar_and_from_a_projected_volume():
    walk = adapter_walk()
    spec = adapter_pod_spec(walk)
    spec["containers"].insert(0, {"name": "istio-proxy", "args": ["proxy", "--concurrency", "2"]})
    spec["containers"].insert(0, {"name": "oauth2-proxy", "args": ["--config=/etc/oauth2-proxy/proxy.cfg"]})
    spec["volumes"] = [{"name": "config", "projected": {"sources": [{"configMap": {"name": "prometheus-adapter"}}]}}]
    assert adapter_rule_answers(walk).startswith(f"the adapter's query for {DURATION} returns a value")


def test_the_config_the_adapter_sees_is_read_through_the_deepest_of_overlapping_mounts():
    """The runtime mounts in order of depth: a file mounted over the chart's
    directory is what the adapter reads, whatever the order of the list."""
    walk = adapter_walk()
    spec = adapter_pod_spec(walk)
    spec["containers"][0]["volumeMounts"] += [
        {"name": "override", "mountPath": "/etc/adapter/config.yaml", "subPath": "config.yaml"},
    ]
    spec["containers"][0]["volumeMounts"].insert(0, {"name": "etc", "mountPath": "/etc"})
    spec["volumes"] += [{"name": "override", "configMap": {"name": "override"}}, {"name": "etc", "emptyDir": {}}]
    override = "/api/v1/namespaces/monitoring/configmaps/override"
    walk.cluster.answers[override] = {"metadata": {"name": "override"}, "data": {"config.yaml": "rules: []"}}
    with pytest.raises(Broken, match="the adapter's rules serve nothing"):
        adapter_rule_answers(walk)


@pytest.mark.parametrize(
    "naming, served",
    [
        ({"matches": "^(.*)_count$", "as": "${1}_avg"}, "inference_request_duration_seconds_avg"),
        # Go reads `$1_avg` as the group named "1_avg", which is none: an empty name.
        ({"matches": "^(.*)_count$", "as": "$1_avg"}, None),
        # The name is the expanded template alone, not the series with its match replaced.
        ({"matches": "seconds_count$", "as": "seconds_avg"}, "seconds_avg"),
        ({"matches": "^(?P<base>.*)_count$", "as": "${base}_avg"}, "inference_request_duration_seconds_avg"),
        ({"matches": "^(.*)_count$", "as": "$2"}, None),  # no such group: empty, not a crash
        ({"matches": "^(.*)_count$", "as": "$01"}, None),  # a leading zero makes a name, which is none
        ({"matches": "^(.*)_count$", "as": "a\\d$$"}, "a\\d$"),
        ({"matches": "^(.*)_count$"}, "inference_request_duration_seconds"),  # one group: $1
        ({"matches": "^(.*)_(count)$"}, None),  # two groups and no `as`: the adapter refuses the rule
        ({}, "inference_request_duration_seconds_count"),
    ],
)
def test_a_rules_served_name_is_its_template_expanded_as_go_expands_it(naming, served):
    assert served_name({"seriesQuery": 'inference_request_duration_seconds_count{pod!=""}', "name": naming}) == served


def test_a_query_template_doctor_cannot_fill_in_is_not_run_nor_called_broken():
    templated = ADAPTER_RULE | {"metricsQuery": "sum(rate(<< .Series >>{<<.LabelMatchers>>}[40s])) by (pod)"}
    walk = adapter_walk(config=config_map({"config.yaml": yaml.safe_dump({"rules": [templated]})}))
    walk.prometheus = RefusingPrometheus("up")
    assert "uses template actions doctor does not fill in" in adapter_rule_answers(walk)


def test_of_a_projected_volume_the_config_map_the_kubelet_writes_last_with_the_key_is_read():
    """Later sources overwrite earlier ones: a CA bundle first does not hide the config after it."""
    walk = adapter_walk()
    sources = [{"configMap": {"name": "prometheus-adapter"}}, {"configMap": {"name": "ca-bundle"}}]
    adapter_pod_spec(walk)["volumes"] = [{"name": "config", "projected": {"sources": sources}}]
    ca_bundle = "/api/v1/namespaces/monitoring/configmaps/ca-bundle"
    walk.cluster.answers[ca_bundle] = {"metadata": {"name": "ca-bundle"}, "data": {"ca.crt": "..."}}
    assert adapter_rule_answers(walk).startswith(f"the adapter's query for {DURATION} returns a value")


def test_of_a_projected_volume_the_source_whose_items_name_the_file_is_read():
    walk = adapter_walk()
    sources = [
        {"configMap": {"name": "ca-bundle"}},
        {"configMap": {"name": "prometheus-adapter", "items": [{"key": "config.yaml", "path": "config.yaml"}]}},
    ]
    adapter_pod_spec(walk)["volumes"] = [{"name": "config", "projected": {"sources": sources}}]
    assert adapter_rule_answers(walk).startswith(f"the adapter's query for {DURATION} returns a value")


def test_a_rule_in_go_regex_syntax_python_lacks_is_no_broken_config():
    go_only = ADAPTER_RULE | {"name": {"matches": "^(.*)_total\\z", "as": "${1}_per_second"}}
    walk = adapter_walk(config=config_map({"config.yaml": yaml.safe_dump({"rules": [go_only, ADAPTER_RULE]})}))
    assert adapter_rule_answers(walk).startswith(f"the adapter's query for {DURATION} returns a value")
    # Nothing doctor can read serves it: not checked (the metrics API's link is), rather than called broken.
    bare = ADAPTER_RULE | {"seriesQuery": '{__name__=~"^inference_request_duration_seconds_count$"}'}
    unserved = adapter_walk(config=config_map({"config.yaml": yaml.safe_dump({"rules": [go_only, bare]})}))
    assert "it cannot tell what rules #0, #1 serve" in adapter_rule_answers(unserved)


class RefusingPrometheus(FakePrometheus):
    def query(self, promql):
        raise ApiError("/proxy/api/v1/query", 400, json.dumps({"status": "error", "error": "1:60: parse error"}))


class TimingOutPrometheus(FakePrometheus):
    def query(self, promql):
        raise PrometheusUnavailable("Prometheus (prometheus-operated.monitoring.svc) fails: HTTP 503 (query timed out)")


def test_a_query_of_doctors_that_prometheus_refuses_says_so_not_that_it_cannot_read():
    error = ApiError(PROMETHEUS_TARGETS, 422, json.dumps({"status": "error", "error": "too many samples"}))
    assert str(error) == "Prometheus refused doctor's query: HTTP 422 (too many samples)"


def test_only_the_api_servers_own_refusal_is_blamed_on_the_kubeconfig():
    """An auth proxy before Prometheus may answer 401 through the API server, which let doctor through."""
    proxied = ApiError(PROMETHEUS_TARGETS, 401, "Unauthorized", "Unauthorized")
    assert (
        str(proxied)
        == "cannot read services/proxy prometheus-operated:web in namespace monitoring: HTTP 401 Unauthorized"
    )
    refused = ApiError(
        PODS, 401, json.dumps({"kind": "Status", "code": 401, "message": "Unauthorized"}), "Unauthorized"
    )
    assert "refused the kubeconfig's credentials" in str(refused)


@pytest.mark.parametrize(
    "prometheus, detail, fix",
    [
        (
            RefusingPrometheus,
            r"Prometheus refuses the adapter's query for .* \(HTTP 400\): 1:60: parse",
            "fix the rule's",
        ),
        (TimingOutPrometheus, f"query timed out.*, on the adapter's query for {DURATION}", "may be too heavy"),
    ],
    ids=["refused", "timed-out"],
)
def test_an_adapter_query_prometheus_refuses_or_times_out_is_the_rule_broken_not_an_unreadable_cluster(
    prometheus, detail, fix
):
    walk = adapter_walk()
    walk.prometheus = prometheus("up")
    with pytest.raises(Broken, match=detail) as broken:
        adapter_rule_answers(walk)
    assert "ConfigMap monitoring/prometheus-adapter key config.yaml" in broken.value.fix and fix in broken.value.fix


def test_a_metric_the_adapter_fails_to_fetch_is_a_finding_pointing_at_its_log():
    walk = adapter_walk()
    adapter_rule_answers(walk)
    failing = ApiError(CUSTOM_METRICS, 500, json.dumps({"kind": "Status", "message": "unable to fetch metrics"}))
    walk.cluster.answers |= {"/apis/apiregistration.k8s.io/v1/apiservices": [], CUSTOM_METRICS: failing}
    with pytest.raises(Broken, match="the metrics API answers 500: unable to fetch metrics") as broken:
        metrics_api_serves(walk)
    assert "kubectl -n monitoring logs deploy/prometheus-adapter" in broken.value.fix


def test_a_metric_the_metrics_api_cannot_find_yet_is_a_finding_with_the_adapters_timing():
    walk = adapter_walk()
    adapter_rule_answers(walk)
    walk.budget["scrape interval"] = "10s"
    missing = not_found(CUSTOM_METRICS, f"the server could not find the metric {DURATION} for pods")
    walk.cluster.answers |= {
        "/apis/apiregistration.k8s.io/v1/apiservices": [],
        CUSTOM_METRICS: missing,
    }
    with pytest.raises(Broken, match=f"answers 404: the server could not find the metric {DURATION}") as broken:
        metrics_api_serves(walk)
    assert "relist interval (30s)" in broken.value.fix and "scrape interval (10s)" in broken.value.fix
    assert "rollout restart deploy/prometheus-adapter" in broken.value.fix


class ImpostorApiServer(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the class's `status` and `body`: a kubeconfig pointed at
    something that is not Kubernetes, or at an API server that refuses or fails."""

    status = 200
    body = b""

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "body, named",
    [
        (b"<html>hello</html>", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "a list without its items"),
        (b'{"items": [{}]}', "an object without metadata.name"),
    ],
    ids=["html", "not-utf-8", "array", "no-items", "objects-without-fields"],
)
def test_doctor_says_in_one_line_that_the_server_is_no_kubernetes_api_server(tmp_path, body, named):
    handler = type("Impostor", (ImpostorApiServer,), {"body": body})
    with http.server.ThreadingHTTPServer((LOOPBACK, 0), handler) as impostor:
        threading.Thread(target=impostor.serve_forever, daemon=True).start()
        result = doctor_at(tmp_path, impostor.server_port)
        impostor.shutdown()
    assert result.returncode == 2
    assert "does not answer as a Kubernetes API server" in result.stderr and named in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "status, says",
    [
        (401, "refused the kubeconfig's credentials"),
        (403, "needs the verb list on it (docs/operations.md"),
        (429, "(canned 429)"),
        (503, "(canned 503)"),
    ],
)
def test_an_api_server_that_refuses_or_fails_leaves_the_pipeline_unread_not_broken(tmp_path, status, says):
    """Exit 1 is a broken pipeline; doctor could not read this one at all."""
    body = json.dumps({"kind": "Status", "code": status, "message": f"canned {status}"}).encode()
    handler = type("Refusing", (ImpostorApiServer,), {"status": status, "body": body})
    with http.server.ThreadingHTTPServer((LOOPBACK, 0), handler) as refusing:
        threading.Thread(target=refusing.serve_forever, daemon=True).start()
        result = doctor_at(tmp_path, refusing.server_port)
        refusing.shutdown()
    assert result.returncode == 2, result.stdout
    reason = HTTPStatus(status).phrase
    what = "deployments in API group apps in namespace default"
    assert f"inferscale doctor: cannot read {what}: HTTP {status} {reason}" in result.stderr, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_a_server_certificate_the_kubeconfigs_ca_did_not_sign_is_named_as_unreachable(tmp_path):
    served = Pki.create(tmp_path / "server-pki").issue("apiserver", "apiserver", ip_addresses=[LOOPBACK], server=True)
    trusted = Pki.create(tmp_path / "kubeconfig-pki").ca_cert
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(served.cert, served.key)
    with http.server.ThreadingHTTPServer((LOOPBACK, 0), ImpostorApiServer) as server:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        result = doctor_at(tmp_path, server.server_port, https_ca=trusted)
        server.shutdown()
    assert result.returncode == 2
    assert "cannot reach the API server" in result.stderr and "TLS failed" in result.stderr, result.stderr
    assert "certificate verify failed" in result.stderr and "Traceback" not in result.stderr


def test_a_hung_api_server_is_asked_once_and_named_after_one_timeout(tmp_path):
    """urllib3 tries a GET that timed out three more times: four timeouts
    (41 s at the default 10) before the doctor said anything."""
    requests: list[bytes] = []
    with socket.create_server((LOOPBACK, 0)) as hung:
        threading.Thread(target=_read_and_stall, args=(hung, requests), daemon=True).start()
        result = doctor_at(tmp_path, hung.getsockname()[1], "--request-timeout", "0.5")
    assert result.returncode == 2
    assert "cannot reach the API server" in result.stderr and "timed out" in result.stderr
    assert "Traceback" not in result.stderr
    assert len([r for r in requests if r.startswith(b"GET ")]) == 1, requests


def test_an_answer_that_stalls_mid_body_is_named_after_one_timeout(tmp_path):
    """The headers came in time; the body is read after them, and must time out as well."""
    head = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"items": ['
    with socket.create_server((LOOPBACK, 0)) as stalling:
        threading.Thread(target=_read_and_stall, args=(stalling, [], head), daemon=True).start()
        result = doctor_at(tmp_path, stalling.getsockname()[1], "--request-timeout", "0.5")
    assert result.returncode == 2
    assert "cannot reach the API server" in result.stderr and "timed out" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("given", ["--kubeconfig=~/kc", "KUBECONFIG=:~/kc"], ids=["flag", "path-list"])
def test_a_kubeconfig_path_with_a_tilde_is_read_as_kubectl_reads_it(tmp_path, given):
    """`--kubeconfig=~/x` reaches the program unexpanded (bash expands no `~`
    after `=`), as does a $KUBECONFIG that a unit file sets."""
    handler = type("Impostor", (ImpostorApiServer,), {"body": b"[]"})
    with http.server.ThreadingHTTPServer((LOOPBACK, 0), handler) as impostor:
        threading.Thread(target=impostor.serve_forever, daemon=True).start()
        write_kubeconfig(tmp_path / "kc", impostor.server_port)
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"} | {"HOME": str(tmp_path)}
        command = [sys.executable, "-m", "inferscale.cli", "doctor"]
        if given.startswith("--"):
            command.append(given)
        else:
            env["KUBECONFIG"] = given.split("=", 1)[1]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        impostor.shutdown()
    # It reached the server: its answer, not the file, is what is wrong.
    assert result.returncode == 2 and "not a JSON object" in result.stderr, result.stderr


def test_a_kubeconfig_that_is_not_there_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "kubeconfig"
    command = [sys.executable, "-m", "inferscale.cli", "doctor", "--kubeconfig", str(missing)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"no kubeconfig at {missing}" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [
        ("-n", "../kube-system", "a namespace"),
        ("--namespace", "Serving", "a namespace"),
        ("-n", "", "a namespace"),
        ("-n", "a" * 64, "a namespace"),
        ("--release", "web..v2", "a helm release name"),
        ("--release", "web-", "a helm release name"),
        ("--release", "w" * 54, "a helm release name"),
    ],
)
def test_a_name_kubernetes_or_helm_would_refuse_is_refused_before_the_cluster_is_asked(tmp_path, option, value, kind):
    missing = tmp_path / "kubeconfig"  # had the name passed, this would be the error
    command = [sys.executable, "-m", "inferscale.cli", "doctor", "--kubeconfig", str(missing), option, value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{value!r} is not {kind}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_dotted_release_and_a_long_namespace_are_names():
    command = [sys.executable, "-m", "inferscale.cli", "doctor", "--kubeconfig", "/nonexistent/kubeconfig"]
    result = subprocess.run(
        [*command, "--release", "web.v2", "-n", "n" * 63], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "no kubeconfig at /nonexistent/kubeconfig" in result.stderr, result.stderr


def _read_and_stall(listener: socket.socket, requests: list[bytes], start: bytes = b"") -> None:
    """Reads each request and sends `start` of its answer (nothing by default), never the rest."""
    kept = []  # open, so the client waits for its answer rather than seeing a close
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:  # the test closed the listener
            return
        kept.append(connection)
        requests.append(connection.recv(65536))
        connection.sendall(start)


def doctor_at(tmp_path, port: int, *options: str, https_ca=None) -> subprocess.CompletedProcess:
    """`inferscale doctor` with a kubeconfig whose server is LOOPBACK:port (over TLS, trusting `https_ca`, if given)."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", port, https_ca)
    command = [sys.executable, "-m", "inferscale.cli", "doctor", "--kubeconfig", str(kubeconfig), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def write_kubeconfig(kubeconfig, port: int, https_ca=None):
    if https_ca is None:
        cluster = {"server": f"http://{LOOPBACK}:{port}"}
    else:
        cluster = {"server": f"https://{LOOPBACK}:{port}", "certificate-authority": str(https_ca)}
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return kubeconfig
