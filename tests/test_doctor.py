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
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest

from inferscale.doctor.pipeline import Broken, Walk, hpa_metrics, hpa_scaling, pods_ready, targets_up
from inferscale.doctor.selectors import describe, matches
from localcluster.loopback import LOOPBACK
from localcluster.node import run
from localcluster.processes import wait_until
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig

ADAPTER = ("-n", "monitoring", "deployment/prometheus-adapter")
API_SERVICE = "v1beta1.custom.metrics.k8s.io"
PROMETHEUS = ("-n", "monitoring", "prometheus/kube-prometheus-stack-prometheus")
# The scrape's path: Prometheus's pod to the app pod's admin port, across the node's bridge.
BLOCK_SCRAPES = ("FORWARD", "-p", "tcp", "--dport", "8081", "-j", "REJECT", "--reject-with", "tcp-reset")
DURATION = "inference_request_duration_seconds_avg"
UTILIZATION = "inference_slot_utilization"


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
    with LocalStack(StackConfig(workdir=tmp_path / "stack", **FAST_LOOP)) as stack:
        stack.wait_for_hpa_metric(240)
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
        for metric in (DURATION, UTILIZATION):
            assert f"the adapter's query for {metric} returns a value for each" in links["adapter rule per pod"]
            assert f"custom.metrics.k8s.io serves {metric} for every ready pod" in links["metrics API"]
            assert f"{metric} " in links["HPA"] and "against target" in links["HPA"], links["HPA"]
        assert "against target 750m" in links["HPA"] or "against target 0.75" in links["HPA"], links["HPA"]
        assert report["budget"]["scrape interval"] == "2s"
        assert report["budget"]["rate window"] == "10s"
        assert report["budget"]["relist interval"] == "5s"
        text = run_doctor(stack)
        assert text.returncode == 0 and text.stdout.rstrip().endswith("healthy"), text.stdout + text.stderr

        hpa = stack.fullname
        # A typo in either metric's name: the second one too, which alone would stop every scale-in.
        for index, name in enumerate((DURATION, UTILIZATION)):
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
    address = "prometheus-operated:web"

    def __init__(self, *healths):
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
        return {"activeTargets": self.targets}


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

    def items(self, path, **params):
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


class ImpostorApiServer(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and the class's `body`: a kubeconfig pointed at something that is not Kubernetes."""

    body = b""

    def do_GET(self):
        self.send_response(200)
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
        (b'{"items": [{}]}', "KeyError"),
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


def test_a_hung_api_server_is_asked_once_and_named_after_one_timeout(tmp_path):
    """urllib3 tries a GET that timed out three more times: four timeouts
    (41 s at the default 10) before the doctor said anything."""
    requests: list[bytes] = []
    with socket.create_server((LOOPBACK, 0)) as hung:
        threading.Thread(target=_read_and_never_answer, args=(hung, requests), daemon=True).start()
        result = doctor_at(tmp_path, hung.getsockname()[1], "--request-timeout", "0.5")
    assert result.returncode == 2
    assert "cannot reach the API server" in result.stderr and "timed out" in result.stderr
    assert "Traceback" not in result.stderr
    assert len([r for r in requests if r.startswith(b"GET ")]) == 1, requests


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


def _read_and_never_answer(listener: socket.socket, requests: list[bytes]) -> None:
    kept = []  # open, so the client waits for its answer rather than seeing a close
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:  # the test closed the listener
            return
        kept.append(connection)
        requests.append(connection.recv(65536))


def doctor_at(tmp_path, port: int, *options: str) -> subprocess.CompletedProcess:
    """`inferscale doctor` with a kubeconfig whose server is LOOPBACK:port."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", port)
    command = [sys.executable, "-m", "inferscale.cli", "doctor", "--kubeconfig", str(kubeconfig), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def write_kubeconfig(kubeconfig, port: int):
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://{LOOPBACK}:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return kubeconfig
