"""The local cluster: the real control plane binaries, the node agent that runs
pods as local processes, and the service proxy that routes to them.

The slow tests share one control plane and one node agent (module fixtures)
and run in file order: a Deployment is created, scaled, has a pod deleted,
loses its agent to SIGKILL, and finally everything is stopped and /proc is
searched for anything left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from localcluster import ControlPlane, ManagedProcess, free_port, wait_until
from localcluster.node_agent import Api, Mount, agent_process, container_argv, expand_references, rewrite_value
from localcluster.node_agent import _pre_stop_sleep
from localcluster.processes import session_members
from localcluster.service_proxy import ProxySpec, ServiceProxy, _Balancer, backends_for
from servers import scrape

NODE = "local-node"
NAMESPACE = "web"
INFERSCALE = str(Path(sys.executable).parent / "inferscale")
# Long enough to tell "process started" from "model loaded" in pod status
# (whose times have one-second resolution), short enough for a quick test.
MODEL_LOAD_SECONDS = 3
# Long enough that a request is still running after the 1 s preStop sleep,
# so the pod's SIGTERM lands while it is in flight.
INFERENCE_SECONDS = 2
GRACE_SECONDS = 20

DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NAMESPACE}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: {GRACE_SECONDS}
      containers:
      - name: server
        image: inferscale:0.1.0
        command: [inferscale]
        args: [serve]
        env:
        - {{name: HOST, value: "0.0.0.0"}}
        - {{name: PORT, value: "8080"}}
        - {{name: WORKERS, value: "1"}}
        - {{name: MODEL_LOAD_SECONDS, value: "{MODEL_LOAD_SECONDS}"}}
        - {{name: INFERENCE_DURATION_SECONDS, value: "{INFERENCE_SECONDS}"}}
        - {{name: PROMETHEUS_MULTIPROC_DIR, value: /tmp/inferscale-metrics}}
        - {{name: LOG_LEVEL, value: warning}}
        ports: [{{name: http, containerPort: 8080}}]
        startupProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1, failureThreshold: 30}}
        readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1, failureThreshold: 2}}
        livenessProbe: {{httpGet: {{path: /health, port: http}}, periodSeconds: 5, timeoutSeconds: 3}}
        lifecycle: {{preStop: {{sleep: {{seconds: 1}}}}}}
        resources: {{requests: {{cpu: 250m}}}}
        volumeMounts:
        - {{name: tmp, mountPath: /tmp}}
        - {{name: metrics, mountPath: /tmp/inferscale-metrics}}
      volumes:
      - {{name: tmp, emptyDir: {{}}}}
      - {{name: metrics, emptyDir: {{}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NAMESPACE}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""


# --- pure parts: no processes ------------------------------------------------------


def test_all_interfaces_become_the_pod_ip_and_mount_paths_the_volume_dir(tmp_path):
    mounts = [Mount("/tmp/inferscale-metrics", tmp_path / "metrics"), Mount("/tmp", tmp_path / "tmp")]
    assert rewrite_value("0.0.0.0", "127.0.1.7", mounts) == "127.0.1.7"
    assert rewrite_value("0.0.0.0:8080", "127.0.1.7", mounts) == "127.0.1.7:8080"
    assert rewrite_value("--bind=0.0.0.0:9", "127.0.1.7", mounts) == "--bind=127.0.1.7:9"
    assert rewrite_value("/tmp/inferscale-metrics", "127.0.1.7", mounts) == str(tmp_path / "metrics")
    assert rewrite_value("/tmp/x/y", "127.0.1.7", mounts) == str(tmp_path / "tmp" / "x" / "y")
    assert rewrite_value("/tmpfoo", "127.0.1.7", mounts) == "/tmpfoo"
    assert rewrite_value("10.0.0.0", "127.0.1.7", mounts) == "10.0.0.0"


def test_image_command_replaces_command_zero_and_keeps_the_rest():
    commands = {"inferscale": "/venv/bin/inferscale"}
    container = {"image": "inferscale:0.1.0", "command": ["inferscale", "-v"], "args": ["serve"]}
    assert container_argv(container, commands) == ["/venv/bin/inferscale", "-v", "serve"]
    assert container_argv({"image": "inferscale", "args": ["serve"]}, commands) == ["/venv/bin/inferscale", "serve"]
    with pytest.raises(Exception, match="no --image-command"):
        container_argv({"image": "nginx:1"}, commands)


def test_variable_references_expand_like_kubernetes():
    assert expand_references("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


def test_pre_stop_sleep_is_understood_in_its_common_forms():
    assert _pre_stop_sleep({"sleep": {"seconds": 5}}) == 5
    assert _pre_stop_sleep({"exec": {"command": ["sleep", "3"]}}) == 3
    assert _pre_stop_sleep({"exec": {"command": ["/bin/sh", "-c", "sleep 2"]}}) == 2
    assert _pre_stop_sleep({"exec": {"command": ["nginx", "-s", "quit"]}}) is None


def _pod(name, ready=True, deleting=False, labels=None, ip="127.0.1.1"):
    return {
        "metadata": {"name": name, "uid": name, "namespace": "ns", "labels": labels or {"app": "a"},
                     **({"deletionTimestamp": "now"} if deleting else {})},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_proxy_routes_only_to_ready_selected_pods_on_the_named_target_port():
    service = {"metadata": {"namespace": "ns"},
               "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    pods = [_pod("ok"), _pod("unready", ready=False), _pod("leaving", deleting=True), _pod("other", labels={"app": "b"})]
    assert [(b.pod, b.port) for b in backends_for(service, pods)] == [("ok", 8080)]
    assert ProxySpec.parse("ns/web:http=127.0.0.1:9000") == ProxySpec("ns", "web", "127.0.0.1", 9000, "http")


def test_balancer_picks_fewest_in_flight_and_takes_turns_among_equals():
    balancer = _Balancer()
    service = {"metadata": {"namespace": "ns"}, "spec": {"selector": {"app": "a"}, "ports": [{"port": 8080}]}}
    balancer.set(backends_for(service, [_pod("a"), _pod("b"), _pod("c")]))
    first = [balancer.acquire().pod for _ in range(3)]
    assert first == ["a", "b", "c"]
    balancer.release(next(b for b in balancer.snapshot() if b.pod == "b"))
    assert balancer.acquire().pod == "b"
    assert balancer.acquire(exclude={"a"}).pod in {"b", "c"}


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        answer = json.dumps({"method": self.command, "path": self.path, "body": body.decode()}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_HEAD = do_POST

    def log_message(self, *args):
        pass


def _echo_pods(live_port: int, dead_port: int) -> list[dict]:
    pods = []
    for name, port in (("a-dead", dead_port), ("b-live", live_port)):
        pod = _pod(name, ip="127.0.0.1")
        pod["spec"]["containers"][0]["ports"][0]["containerPort"] = port
        pods.append(pod)
    return pods


def test_proxy_passes_requests_through_and_retries_only_unreachable_pods():
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    proxy = ServiceProxy(ProxySpec("ns", "echo", "127.0.0.1", free_port())).start()
    service = {"metadata": {"namespace": "ns"},
               "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    try:
        refused = requests.get(proxy.url + "/x", timeout=5)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "error" in refused.json()
        # "a-dead" comes first in turn and refuses connections: the request moves to "b-live".
        proxy.refresh(service, _echo_pods(backend.server_address[1], free_port()))
        with requests.Session() as session:  # one kept-alive client connection
            chunked = session.post(proxy.url + "/p?q=1", data=iter([b"ab", b"cd"]), timeout=5)
            assert chunked.status_code == 201
            assert chunked.json() == {"method": "POST", "path": "/p?q=1", "body": "abcd"}
            head = session.head(proxy.url + "/h", timeout=5)
            assert head.status_code == 201 and head.content == b""
    finally:
        proxy.stop()
        backend.shutdown()
        backend.server_close()


# --- processes -----------------------------------------------------------------------


def test_stop_kills_children_that_ignore_sigterm(tmp_path):
    # The shell exits on SIGTERM; its background child ignores it and would live on.
    script = "(trap '' TERM; sleep 300) & trap 'exit 0' TERM; while true; do sleep 0.1; done"
    process = ManagedProcess("sh", ["sh", "-c", script], tmp_path / "sh.log").start()
    wait_until(lambda: len(session_members(process.session)) >= 3, "child started", 5)
    assert process.stop(timeout=1) == 0
    assert session_members(process.session) == []


def test_sigkilled_owner_takes_its_processes_with_it(tmp_path):
    owner_code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from localcluster import ManagedProcess;"
        "p = ManagedProcess('sleep', ['sleep', '300'], sys.argv[2]).start();"
        "print(p.session, flush=True); time.sleep(300)"
    )
    cluster_dir = str(Path(__file__).parent.parent / "cluster")
    owner = subprocess.Popen([sys.executable, "-c", owner_code, cluster_dir, str(tmp_path / "log")],
                             stdout=subprocess.PIPE, text=True)
    try:
        session = int(owner.stdout.readline())
        assert session_members(session)
        owner.kill()
        wait_until(lambda: not session_members(session), "the owner's processes gone", 5)
    finally:
        owner.kill()
        owner.wait()


# --- the cluster -------------------------------------------------------------------------


def processes_referring_to(*needles: str) -> list[str]:
    """Processes whose command line, working directory or environment mentions any needle."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            texts = [Path(f"/proc/{entry}/cmdline").read_bytes(), os.readlink(f"/proc/{entry}/cwd").encode(),
                     Path(f"/proc/{entry}/environ").read_bytes()]
        except OSError:
            continue
        if any(needle.encode() in text for needle in needles for text in texts):
            command = texts[0].replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {command[:200]}")
    return found


class Agent:
    """The node agent process, restartable (one test SIGKILLs it)."""

    def __init__(self, control_plane: ControlPlane, workdir: Path):
        self.control_plane, self.workdir = control_plane, workdir
        self.proxy_port = free_port()
        self.process: ManagedProcess | None = None

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def start(self) -> "Agent":
        self.process = agent_process(
            self.control_plane.node_kubeconfig(NODE), NODE, self.workdir, {"inferscale": INFERSCALE},
            [f"{NAMESPACE}/web=127.0.0.1:{self.proxy_port}"], stop_timeout=GRACE_SECONDS + 10,
        ).start()
        return self

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("localcluster")


@pytest.fixture(scope="module")
def control_plane(workdir):
    started = time.monotonic()
    control_plane = ControlPlane(workdir / "control-plane", hpa_sync_period="5s")
    try:
        control_plane.start()
        print(f"\ncontrol plane up in {time.monotonic() - started:.1f} s")
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def api(control_plane):
    return Api(control_plane.admin_kubeconfig)


@pytest.fixture(scope="module")
def agent(control_plane, workdir):
    agent = Agent(control_plane, workdir / "node")
    try:
        yield agent.start()
    finally:
        agent.stop()


def kubectl(control_plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(["kubectl", "--kubeconfig", str(control_plane.admin_kubeconfig), *args],
                            input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def web_pods(api: Api) -> list[dict]:
    return api.get(f"/api/v1/namespaces/{NAMESPACE}/pods", {"labelSelector": "app=web"})["items"]


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def ready_pods(api: Api, count: int, timeout: float = 60) -> list[dict]:
    def exactly_ready():
        pods = [p for p in web_pods(api) if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count and all(is_ready(p) for p in pods) else None

    return wait_until(exactly_ready, f"{count} Ready web pods", timeout, interval=0.2)


def requests_served(pod: dict) -> float:
    samples = scrape(f"http://{pod['status']['podIP']}:8080")
    return sum(v for k, v in samples.items() if k.startswith("inference_requests_total"))


def predict(url: str) -> requests.Response:
    return requests.post(f"{url}/predict", json={"features": [1.0, 2.0, 3.0]}, timeout=60)


@pytest.mark.slow
def test_control_plane_serves_the_pinned_kubernetes_version(control_plane):
    version = json.loads(kubectl(control_plane, "version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == "v1.33.13"
    assert control_plane.start_seconds < 60


@pytest.mark.slow
def test_node_agent_registers_a_ready_untainted_node_and_renews_its_lease(api, agent):
    def node_ready():
        node = api.get(f"/api/v1/nodes/{NODE}")
        ready = node and any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        # The lifecycle controller removes the not-ready taint a new node starts with.
        return node if ready and not node["spec"].get("taints") else None

    node = wait_until(node_ready, "node Ready and untainted", 30, agent.process)
    assert node["status"]["allocatable"]["cpu"] == "16"
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}
    lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
    assert lease["spec"]["holderIdentity"] == NODE


@pytest.mark.slow
def test_pods_turn_ready_only_after_the_model_loads_and_serve_at_their_own_ip(control_plane, api, agent):
    kubectl(control_plane, "create", "namespace", NAMESPACE)
    # Pods are refused until the namespace's default ServiceAccount exists; waiting
    # here saves the ReplicaSet controller's retry back-off.
    wait_until(lambda: api.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"), "default SA", 30)
    kubectl(control_plane, "apply", "-f", "-", stdin=DEPLOYMENT)
    created = time.monotonic()
    seen_running_unready = False
    while True:
        pods = web_pods(api)
        statuses = [s for p in pods for s in p["status"].get("containerStatuses", [])]
        if pods and not is_ready(pods[0]) and statuses and statuses[0]["state"].get("running"):
            seen_running_unready = True
        if pods and is_ready(pods[0]):
            break
        assert time.monotonic() - created < 60, yaml.safe_dump(pods)
        time.sleep(0.2)
    print(f"\npod Ready {time.monotonic() - created:.1f} s after the Deployment was applied")
    pod = pods[0]
    status = pod["status"]
    assert seen_running_unready, "the pod was Ready as soon as its process ran: probes were not followed"
    ready_at = next(c["lastTransitionTime"] for c in status["conditions"] if c["type"] == "Ready")
    started_at = status["containerStatuses"][0]["state"]["running"]["startedAt"]
    # Both times have one-second resolution.
    assert _seconds(ready_at) - _seconds(started_at) >= MODEL_LOAD_SECONDS - 1
    assert status["podIP"].startswith("127.0.1.") and status["hostIP"] == "127.0.0.1"
    assert status["phase"] == "Running" and status["startTime"]
    assert status["containerStatuses"][0]["containerID"].startswith("local://")

    assert predict(f"http://{status['podIP']}:8080").status_code == 200
    assert wait_until(lambda: predict(agent.proxy_url).status_code == 200, "proxy routes to the pod", 5)
    # PROMETHEUS_MULTIPROC_DIR=/tmp/inferscale-metrics landed in the pod's emptyDir.
    pod_dir = agent.workdir / "pods" / f"{NAMESPACE}_{pod['metadata']['name']}_{pod['metadata']['uid']}"
    assert list((pod_dir / "volumes" / "metrics").glob("*.db"))


def _seconds(timestamp: str) -> float:
    return time.mktime(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.slow
def test_scaling_to_three_gives_distinct_ips_and_the_proxy_spreads_requests(control_plane, api, agent):
    kubectl(control_plane, "scale", "deployment/web", "-n", NAMESPACE, "--replicas=3")
    pods = ready_pods(api, 3)
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3
    wait_until(lambda: len(_proxy_backends(agent)) == 3, "proxy sees 3 pods", 5)
    before = {p["metadata"]["name"]: requests_served(p) for p in pods}
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: predict(agent.proxy_url).status_code, range(6)))
    assert statuses == [200] * 6
    after = {p["metadata"]["name"]: requests_served(p) for p in pods}
    assert all(after[name] - before[name] == 2 for name in before), (before, after)


def _proxy_backends(agent: Agent) -> list[str]:
    log = (agent.workdir / "node-agent.log").read_text()
    last = [line for line in log.splitlines() if f"{NAMESPACE}/web -> " in line][-1]
    return [b for b in last.split(" -> ", 1)[1].split(", ") if "@" in b]


@pytest.mark.slow
def test_deleting_a_pod_lets_its_in_flight_request_finish(control_plane, api, agent):
    pods = ready_pods(api, 3)
    outcome = {}
    request = threading.Thread(target=lambda: outcome.setdefault("response", predict(agent.proxy_url)))
    request.start()

    def busy_pod():
        for pod in pods:
            if scrape(f"http://{pod['status']['podIP']}:8080").get("inference_in_flight_requests", 0) >= 1:
                return pod
        return None

    victim = wait_until(busy_pod, "the request in flight on a pod", 5, interval=0.05)
    pid = int(victim["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))
    deleted = time.monotonic()
    kubectl(control_plane, "delete", "pod", victim["metadata"]["name"], "-n", NAMESPACE, "--wait=false")
    # While it drains, new requests go elsewhere and succeed.
    time.sleep(0.6)
    assert predict(agent.proxy_url).status_code == 200
    request.join(30)
    assert outcome["response"].status_code == 200
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the pod's process gone", GRACE_SECONDS)
    exited = time.monotonic() - deleted
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{victim['metadata']['name']}"
    wait_until(lambda: api.get(path) is None, "the pod object gone", GRACE_SECONDS)
    print(f"\ndeleted pod's process exited {exited:.1f} s after the delete (grace {GRACE_SECONDS} s)")
    assert exited < GRACE_SECONDS


RESTARTING_PODS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: crashing, namespace: {NAMESPACE}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: inferscale:0.1.0
    command: [inferscale]
    args: [serve]
    env: [{{name: MODEL_LOAD_SECONDS, value: "-1"}}]  # invalid: the server exits with 2
---
apiVersion: v1
kind: Pod
metadata: {{name: unhealthy, namespace: {NAMESPACE}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: inferscale:0.1.0
    command: [inferscale]
    args: [serve]
    env:
    - {{name: HOST, value: "0.0.0.0"}}
    - {{name: WORKERS, value: "1"}}
    - {{name: MODEL_LOAD_SECONDS, value: "0"}}
    ports: [{{name: http, containerPort: 8080}}]
    livenessProbe: {{httpGet: {{path: /no-such-path, port: http}}, periodSeconds: 1, failureThreshold: 2}}
"""


@pytest.mark.slow
def test_crashing_and_unhealthy_containers_are_restarted(control_plane, api):
    kubectl(control_plane, "apply", "-f", "-", stdin=RESTARTING_PODS)

    def status(name):
        pod = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        return pod["status"].get("containerStatuses", [{}])[0]

    # Exits are restarted at once, then with the kubelet's back-off.
    crashing = wait_until(lambda: (s := status("crashing")).get("state", {}).get("waiting", {}).get("reason")
                          == "CrashLoopBackOff" and s, "CrashLoopBackOff", 30)
    assert crashing["restartCount"] >= 1
    assert crashing["lastState"]["terminated"]["exitCode"] == 2
    # A failing liveness probe kills the container and a new one starts.
    unhealthy = wait_until(lambda: (s := status("unhealthy")).get("restartCount", 0) >= 1 and s, "restart", 30)
    assert unhealthy["lastState"]["terminated"]["finishedAt"]
    kubectl(control_plane, "delete", "pod", "crashing", "unhealthy", "-n", NAMESPACE, "--wait=false")
    wait_until(lambda: not api.get(f"/api/v1/namespaces/{NAMESPACE}/pods", {"fieldSelector": "metadata.name=unhealthy"})
               ["items"] and not api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/crashing"), "pods gone", 15)


@pytest.mark.slow
def test_sigkilled_agent_leaves_no_pod_process_and_a_new_one_takes_over(api, agent):
    pods = ready_pods(api, 3)
    pids = [int(p["status"]["containerStatuses"][0]["containerID"].removeprefix("local://")) for p in pods]
    os.kill(agent.process.pid, signal.SIGKILL)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), "pod processes gone", 5)
    # The pods' watchdogs (working directory: the pod's) exit right after their pods.
    wait_until(lambda: processes_referring_to(str(agent.workdir / "pods")) == [], "no process in a pod dir", 5)
    agent.process.stop()
    agent.start()

    def restarted():
        pods = ready_pods(api, 3)
        statuses = [p["status"]["containerStatuses"][0] for p in pods]
        return all(s["containerID"] != f"local://{pid}" for s in statuses for pid in pids) and statuses

    statuses = wait_until(restarted, "the new agent runs the pods again", 30)
    assert [s["restartCount"] for s in statuses] == [1, 1, 1]


@pytest.mark.slow
def test_stopping_everything_leaves_no_process_behind(control_plane, agent, workdir):
    pods = ready_pods(Api(control_plane.admin_kubeconfig), 3)
    pids = [int(p["status"]["containerStatuses"][0]["containerID"].removeprefix("local://")) for p in pods]
    started = time.monotonic()
    assert agent.stop() == 0  # 0: the agent finished its graceful stop before being killed
    print(f"\nagent stopped its 3 pods in {time.monotonic() - started:.1f} s")
    control_plane.stop()
    assert processes_referring_to(str(workdir)) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
