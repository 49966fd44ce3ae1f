"""A real node (containerd, runc, the CNI bridge, the pinned kubelet and
kube-proxy) joins the local control plane, runs pods, and leaves the machine
as it found it.

Each test starts the node anew on one control plane, as a re-run of the demo
or of a test does; the last one after SIGKILLing a node's owner. One installs
the chart with the image built from the Dockerfile and sends it traffic the
way a user outside the cluster does, through a NodePort.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import find_helm
from prometheus_client.parser import text_string_to_metric_families
from test_chart import chart_values, only, render

from inferscale.doctor.kube import Cluster
from inferscale.simulation.chart_values import Autoscaling, Behavior, coalesced
from inferscale.simulation.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP
from localcluster import ControlPlane, dns, wait_until
from localcluster.binaries import binary
from localcluster.kubectl import apply, kubectl
from localcluster.node import (
    CONTAINERD_RUN_DIR,
    CONTAINERD_SOCKET,
    HOST_IF,
    HOST_IP,
    NETNS,
    NODE_DIR,
    NODE_IP,
    PAUSE_IMAGE,
    POD_CIDR,
    NodeBusy,
    RealNode,
    mount_points,
    read_sysctls,
)
from localcluster.stack import install_chart

pytestmark = pytest.mark.cluster

NAMESPACE = "default"
PRE_STOP_SECONDS = 3
GRACE_SECONDS = 10
# comm is cut at 15 characters: containerd-shim-runc-v2 reads containerd-shim.
NODE_PROCESSES = ("kubelet", "kube-proxy", "containerd", "containerd-shim", "pause", "coredns", "inferscale")
CHART_NAMESPACE = "inferscale"
# The chart as users install it, but quick to load and answer, exposed on the
# node, and without the monitoring objects whose CRDs this cluster lacks.
CHART_VALUES = {
    "replicaCount": 2,
    "service": {"type": "NodePort"},
    "server": {"modelLoadSeconds": 0.5, "inferenceDurationSeconds": 0.1, "modelMemoryMb": 8},
    "preStop": {"seconds": 1},
    "autoscaling": {"enabled": False},
    "serviceMonitor": {"enabled": False},
    "prometheusRule": {"enabled": False},
    "dashboard": {"enabled": False},
}


def host_firewall() -> list[str]:
    """The host namespace's rules that could come from the node (every iptables
    backend and family). Only those: another user of this machine may add and
    remove rules of its own meanwhile (buildah's RUN steps do)."""
    ours = re.compile(r"KUBE-|inferscale|cni0|10\.8[78]\.")
    lines = []
    for tool in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"):
        out = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
        lines += [line for line in out.splitlines() if ours.search(line)]
    return lines


def pause_pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "containers": [
                {
                    "name": "pause",
                    "image": PAUSE_IMAGE,
                    "imagePullPolicy": "Never",
                    # No shell in the image: the kubelet's own sleep action makes
                    # deletion take a known time within the grace period.
                    "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                }
            ],
        },
    }


def running_pod(api: Cluster, name: str) -> dict:
    def running():
        pod = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        return pod if pod["status"].get("phase") == "Running" else None

    return wait_until(running, f"pod {name} Running", 60, interval=0.5)


def runc_state(container_id: str) -> dict:
    """What runc itself says of the container (containerd's runc root for the k8s.io namespace)."""
    out = subprocess.run(
        ["runc", "--root", f"{CONTAINERD_RUN_DIR}/runc/k8s.io", "state", container_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def node_mounts(workdir: Path) -> set[str]:
    roots = (str(workdir), str(NODE_DIR), str(CONTAINERD_RUN_DIR), str(NETNS.parent))
    return {point for point in mount_points() if point.startswith(roots)}


def leftover_processes() -> list[str]:
    """Live ones: a killed shim is a zombie until PID 1, its parent, gets round to it."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,comm="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split()[2] in NODE_PROCESSES and line.split()[1][0] != "Z"]


def host_routes() -> list[str]:
    out = subprocess.run(["ip", "route", "show"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if re.search(rf"{HOST_IF}|10\.8[78]\.", line)]


def machine_state(workdir: Path) -> dict:
    """What a node may change on the host, and must give back."""
    return {
        "sysctls": read_sysctls(),
        "firewall": host_firewall(),
        "mounts": node_mounts(workdir),
        "routes": host_routes(),
    }


def assert_nothing_left(workdir: Path, before: dict) -> None:
    assert leftover_processes() == []
    assert not NETNS.exists() and not NODE_DIR.exists() and not CONTAINERD_RUN_DIR.exists()
    # Deleted at stop, not left to the kernel's background release of the namespace.
    assert subprocess.run(["ip", "link", "show", HOST_IF], capture_output=True).returncode != 0
    assert machine_state(workdir) == before


def run_pause_pod(control_plane: ControlPlane, name: str) -> dict:
    """Create the pod; once Running, check it is a real runc container; runc's state of it."""
    # The default ServiceAccount, which admission wants, comes a moment after the control plane.
    wait_until(lambda: apply(control_plane.admin_kubeconfig, [pause_pod(name)]), "pod created", 30)
    pod = running_pod(control_plane.api, name)
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(POD_CIDR)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    state = runc_state(container_id)
    assert state["status"] == "running"
    assert Path(f"/proc/{state['pid']}/exe").resolve().name == "pause"
    return state


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    control_plane = ControlPlane(tmp_path_factory.mktemp("real-node") / "control-plane", advertise_address=HOST_IP)
    with control_plane:
        yield control_plane


def test_the_charts_hpa_keeps_a_tolerance_set_for_one_direction(control_plane):
    """The chart's HPA with `behavior.scaleUp.tolerance`, as docs/sizing.md
    sweeps it, is accepted and kept (the API server drops it with the gate off)."""
    _, kept = hpa_as_kept(control_plane, {"autoscaling": {"behavior": {"scaleUp": {"tolerance": 0.5}}}})
    assert kept["behavior"]["scaleUp"]["tolerance"] == "500m"
    assert "tolerance" not in kept["behavior"]["scaleDown"]


def hpa_as_kept(control_plane: ControlPlane, values: dict) -> tuple[dict, dict]:
    """The chart's HPA spec as helm renders it from `values`, and as the API server keeps it."""
    rendered = only(render(values), "HorizontalPodAutoscaler")
    # A copy: render's documents are cached for every test that renders the same values.
    hpa = {**rendered, "metadata": {**rendered["metadata"], "namespace": NAMESPACE}}
    kubeconfig = control_plane.admin_kubeconfig
    apply(kubeconfig, [hpa])
    try:
        return rendered["spec"], control_plane.api.get(
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{hpa['metadata']['name']}"
        )["spec"]
    finally:
        kubectl(kubeconfig, "delete", "hpa", "-n", NAMESPACE, hpa["metadata"]["name"])


def numeric_tolerances(behavior: dict) -> dict:
    """The behavior with each direction's tolerance, a Quantity the API server
    gives back in its canonical form ("400m" for the chart's 0.4), as the number the values hold."""
    directions = {}
    for name, rules in behavior.items():
        quantity = rules.get("tolerance")
        if isinstance(quantity, str):
            rules = {**rules, "tolerance": int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)}
        directions[name] = rules
    return directions


@pytest.mark.parametrize(
    "behavior",
    [
        None,
        {"scaleUp": None},
        {"scaleDown": {"stabilizationWindowSeconds": None, "policies": None}},
    ],
    ids=["no-behavior", "no-scale-up", "scale-down-window-and-policies-unset"],
)
def test_the_simulator_drops_and_defaults_behavior_as_helm_and_the_api_server_do(control_plane, behavior):
    """A user's nulls, laid over the chart's values by helm and defaulted by
    the API server, give the HPA the simulator builds from the same values."""
    user = {"autoscaling": {"behavior": behavior}}
    rendered, kept = hpa_as_kept(control_plane, user)
    simulated = Autoscaling.model_validate(coalesced(chart_values(), user)["autoscaling"]).spec()
    assert simulated.has_behavior == ("behavior" in kept)
    if simulated.has_behavior:
        # Every field the API server filled in is set here; the scale-down
        # window it leaves unset is the controller's flag, as in the simulator.
        applied = Behavior.model_validate(numeric_tolerances(kept["behavior"]))
        assert applied.scaleUp.rules(DEFAULT_SCALE_UP) == simulated.scale_up
        assert applied.scaleDown.rules(DEFAULT_SCALE_DOWN) == simulated.scale_down
        assert kept["behavior"] != rendered["behavior"], "the API server filled in nothing: the case tests no default"


def test_pod_runs_in_runc_and_is_deleted_within_its_grace_period(control_plane, tmp_path):
    kubeconfig = control_plane.admin_kubeconfig
    before = machine_state(tmp_path)
    with RealNode(control_plane, tmp_path / "node") as node:
        print(f"\nnode Ready in {node.start_seconds:.1f} s")
        with pytest.raises(NodeBusy, match="one node per machine"):
            RealNode(control_plane, tmp_path / "second").start()
        state = run_pause_pod(control_plane, "pause-deleted")
        # The kubelet's chains exist, in the node's namespace only.
        inside = subprocess.run(["nsenter", f"--net={NETNS}", "iptables-save"], capture_output=True, text=True)
        assert "KUBE-" in inside.stdout
        assert host_firewall() == before["firewall"]
        # NodeRestriction: the kubelet's own identity may not give its Node a
        # label that steers workloads onto it.
        node_kubeconfig = control_plane.node_kubeconfig(node.name)
        refused = subprocess.run(
            [
                binary("kubectl"),
                "--kubeconfig",
                str(node_kubeconfig),
                "label",
                "node",
                node.name,
                "node-restriction.kubernetes.io/trusted=yes",
            ],
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0 and "is not allowed to modify labels" in refused.stderr, refused.stderr
        # The API server reaches the kubelet, both verifying the other's certificate.
        assert kubectl(kubeconfig, "get", "--raw", f"/api/v1/nodes/{node.name}/proxy/healthz") == "ok"
        kubectl(kubeconfig, "logs", "-n", NAMESPACE, "pause-deleted")

        started = time.monotonic()
        kubectl(kubeconfig, "delete", "pod", "-n", NAMESPACE, "pause-deleted", "--wait=true", "--timeout=60s")
        took = time.monotonic() - started
        assert PRE_STOP_SECONDS <= took < GRACE_SECONDS + 5, took
        assert not Path(f"/proc/{state['pid']}").exists()
    assert_nothing_left(tmp_path, before)


def test_node_starts_again_and_stops_with_a_pod_still_running(control_plane, tmp_path):
    """The second node on this control plane (same name, new containerd), and
    a teardown that finds a pod running, as Ctrl-C in the demo does."""
    before = machine_state(tmp_path)
    with RealNode(control_plane, tmp_path / "node") as node:
        print(f"\nnode Ready in {node.start_seconds:.1f} s")
        run_pause_pod(control_plane, "pause-left-running")
    assert_nothing_left(tmp_path, before)


# A node with a running pod, in a process of its own that the test SIGKILLs.
# It runs in tests/ (cwd), where `python -c` finds this module.
KILLED_OWNER = """
import sys, time
from pathlib import Path
from localcluster import ControlPlane, RealNode
from test_real_node import run_pause_pod
workdir = Path(sys.argv[1])
control_plane = ControlPlane(workdir / "control-plane").start()
RealNode(control_plane, workdir / "node").start()
run_pause_pod(control_plane, "orphan")
print("up", flush=True)
time.sleep(600)
"""


def test_next_node_clears_what_a_sigkilled_owner_left(control_plane, tmp_path):
    """Its processes die with it (processes.py), but its pod, mounts, cgroups,
    namespace and the sysctls the kubelet wrote would stay."""
    before = machine_state(tmp_path)
    owner = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER, str(tmp_path / "killed")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )
    try:
        assert owner.stdout.readline() == "up\n"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    # Its watchdogs take the kubelet, containerd and the shims down; the pod stays.
    wait_until(lambda: {line.split()[2] for line in leftover_processes()} == {"pause"}, "only the pod left", 10)
    assert NETNS.exists()
    with RealNode(control_plane, tmp_path / "node") as node:
        print(f"\nnode Ready in {node.start_seconds:.1f} s after clearing")
    assert_nothing_left(tmp_path, before)
    assert not list(Path("/sys/fs/cgroup").glob("*/kubepods"))


# Holds containerd's socket path, listening, for argv[1] seconds: what a
# SIGKILLed containerd does until its last thread has exited.
SOCKET_HOLDER = """
import os, socket, sys, time
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[2])
server.listen()
print("up", flush=True)
time.sleep(float(sys.argv[1]))
"""


def hold_containerd_socket(seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", SOCKET_HOLDER, str(seconds), str(CONTAINERD_SOCKET)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "up\n"
    return holder


def test_next_node_waits_for_a_dying_containerd_and_refuses_a_live_one(control_plane, tmp_path, monkeypatch):
    before = machine_state(tmp_path)
    holder = hold_containerd_socket(2)
    with RealNode(control_plane, tmp_path / "node"):
        assert holder.poll() is not None  # it waited for the socket to be let go
    assert_nothing_left(tmp_path, before)

    monkeypatch.setattr("localcluster.node.EXITING_CONTAINERD_SECONDS", 1.0)
    holder = hold_containerd_socket(600)
    try:
        with pytest.raises(NodeBusy, match="has served /run/containerd/containerd.sock for 1 s"):
            RealNode(control_plane, tmp_path / "refused").start()
    finally:
        holder.kill()
        holder.wait()
        CONTAINERD_SOCKET.unlink()
        CONTAINERD_RUN_DIR.rmdir()
    assert machine_state(tmp_path) == before


def successes(pod_ip: str) -> float:
    """The pod's own count of answered inferences, from its admin port (where Prometheus would scrape it)."""
    text = requests.get(f"http://{pod_ip}:8081/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inference_requests_total" and sample.labels.get("status") == "success"
    )


def container_status(pid: int) -> dict[str, str]:
    fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: fields[name].strip() for name in ("Uid", "Gid", "CapEff", "CapBnd", "NoNewPrivs")}


def root_mount_options(pid: int) -> set[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return set(fields[5].split(","))
    raise AssertionError(f"no root mount in /proc/{pid}/mountinfo")


@pytest.mark.image
def test_chart_serves_through_kube_proxy_from_the_image_users_build(control_plane, image_archive, tmp_path):
    kubeconfig = control_plane.admin_kubeconfig
    before = machine_state(tmp_path)
    with RealNode(control_plane, tmp_path / "node", images=[image_archive]) as node:
        print(f"\nnode Ready with the image imported, kube-proxy synced, in {node.start_seconds:.1f} s")
        started = time.monotonic()
        dns.install(control_plane)
        print(f"CoreDNS Ready in {time.monotonic() - started:.1f} s")
        install_chart(
            kubeconfig, "inferscale", CHART_NAMESPACE, CHART_VALUES, tmp_path / "values.yaml", timeout_seconds=120
        )
        pods = control_plane.api.items(
            f"/api/v1/namespaces/{CHART_NAMESPACE}/pods", labelSelector="app.kubernetes.io/name=inferscale"
        )
        assert len(pods) == 2
        pod_ips = [pod["status"]["podIP"] for pod in pods]

        # The EndpointSlice controller lists both Ready pods, which kube-proxy routes to.
        # So do they for the admin port's own Service: a NodePort publishes only `http`.
        # (helm's --wait waits for the pods, not for the controller's slices.)
        def ready_behind(service_name: str) -> list[str]:
            slices = control_plane.api.items(f"/apis/discovery.k8s.io/v1/namespaces/{CHART_NAMESPACE}/endpointslices")
            return sorted(
                e["addresses"][0]
                for s in slices
                if s["metadata"]["labels"]["kubernetes.io/service-name"] == service_name
                for e in s["endpoints"]
                if e["conditions"]["ready"]
            )

        for service_name in ("inferscale", "inferscale-admin"):
            wait_until(
                lambda: ready_behind(service_name) == sorted(pod_ips) or None,  # noqa: B023 - called at once
                f"the EndpointSlices of {service_name} listing both Ready pods",
                30,
            )

        # And kube-proxy has written them: the slices lead its rules by a sync.
        wait_until(
            lambda: node.routed(f"{CHART_NAMESPACE}/inferscale:http") == sorted(pod_ips) or None,
            "kube-proxy routing the Service to both pods",
            30,
        )

        service = control_plane.api.get(f"/api/v1/namespaces/{CHART_NAMESPACE}/services/inferscale")
        [(port_name, node_port)] = [(p["name"], p["nodePort"]) for p in service["spec"]["ports"]]
        assert port_name == "http"
        admin = control_plane.api.get(f"/api/v1/namespaces/{CHART_NAMESPACE}/services/inferscale-admin")
        assert admin["spec"]["type"] == "ClusterIP" and [p["name"] for p in admin["spec"]["ports"]] == ["admin"]
        # A fresh connection each: kube-proxy balances connections, not requests.
        for _ in range(40):
            response = requests.post(
                f"http://{NODE_IP}:{node_port}/predict",
                json={"features": [1, 2, 3]},
                headers={"Connection": "close"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
        served = [successes(ip) for ip in pod_ips]
        assert sum(served) == 40 and min(served) > 0, served

        # runc enforces what the chart's securityContext asks for.
        container_id = pods[0]["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        pid = runc_state(container_id)["pid"]
        status = container_status(pid)
        assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0 and status["NoNewPrivs"] == "1"
        assert "ro" in root_mount_options(pid)

        name = pods[0]["metadata"]["name"]
        assert "Booting worker" in kubectl(kubeconfig, "logs", "-n", CHART_NAMESPACE, name)
        assert kubectl(kubeconfig, "exec", "-n", CHART_NAMESPACE, name, "--", "id", "-u").strip() == "10001"

        # Cluster DNS, from inside a pod: the Service by its short name (the
        # pod's search path), and the API server's Service.
        resolve = "import socket, sys; print(*(socket.gethostbyname(n) for n in sys.argv[1:]))"
        addresses = kubectl(
            kubeconfig,
            "exec",
            "-n",
            CHART_NAMESPACE,
            name,
            "--",
            "python3",
            "-c",
            resolve,
            "inferscale",
            "kubernetes.default.svc.cluster.local",
        ).split()
        assert addresses == [service["spec"]["clusterIP"], "10.96.0.1"]
        # The chart's own test: a pod that calls the Service by name, pod to Service to pod.
        result = subprocess.run(
            [
                find_helm(),
                "test",
                "inferscale",
                "-n",
                CHART_NAMESPACE,
                "--kubeconfig",
                str(kubeconfig),
                "--timeout",
                "2m",
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert result.returncode == 0 and "Phase:          Succeeded" in result.stdout, result.stdout + result.stderr
    assert_nothing_left(tmp_path, before)
