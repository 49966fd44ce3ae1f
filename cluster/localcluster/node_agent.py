"""The node agent: a kubelet substitute that runs each pod as local processes.

No container runtime exists on these machines (DESIGN.md, "What is real"),
so this is the one stand-in. Everything it talks to is real: it registers a
Node, keeps its Lease in kube-node-lease renewed, reads the pods the real
scheduler bound to it, and writes their status through the pods/status
subresource, as a kubelet does. It authenticates as whatever its kubeconfig
says; `ControlPlane.node_kubeconfig()` gives it a kubelet's identity
(system:node:<name>), which the Node authorizer confines to its own node.

How a pod maps onto this machine (a container-runtime substitute):

- Network: each pod gets its own loopback address 127.0.1.N (N in 1..250,
  reused after the pod is gone). An address "0.0.0.0" (or "::") in the
  container's env or args is rewritten to the pod IP: inside a real pod, "all
  interfaces" means the pod's own interface, while here it would make every
  pod fight over one port. A process that binds 0.0.0.0 without saying so in
  its env or args is not rewritten.
- Image: `--image-command inferscale=/abs/path/inferscale` maps an image
  repository (tag ignored) to an installed executable. It replaces
  `command[0]`, keeping the rest of command and args; with no command, it
  stands for the image's ENTRYPOINT.
- Filesystem: emptyDir volumes are directories under the pod's directory
  (`<workdir>/pods/<namespace>_<pod>_<uid>/volumes/<volume>`); an env value
  or argument equal to or under a volumeMount's mountPath is rewritten to
  that directory. Processes run in the pod directory as the agent's user;
  securityContext and resource limits are not applied.
- Processes: each container is a ManagedProcess (processes.py) whose
  watchdog SIGKILLs it if the agent dies, even by SIGKILL: no pod outlives its
  agent. Logs: `<pod dir>/logs/<container>.log` (no kubelet API, so no
  `kubectl logs`).

Pods are found by polling `list pods?fieldSelector=spec.nodeName=<node>`
every 0.5 s rather than by a watch: a poll cannot miss an event or need a
relist after "410 Gone", and at a few dozen pods it costs the API server
next to nothing.

Kubelet behaviour kept: startup/readiness/liveness probes (httpGet and
tcpSocket) with every timing field and its default; restart on liveness or
startup failure and on exit (restartPolicy Always; back-off 10 s doubling to
300 s, first restart immediate); graceful deletion (not Ready at once,
preStop, SIGTERM, SIGKILL when deletionGracePeriodSeconds, counted from when
the agent sees the deletion, have passed, at least 2 s after preStop; then the
pod object is deleted with grace 0 and a uid precondition).
Not supported: init and ephemeral containers, exec and grpc probes, volumes
other than emptyDir (others, e.g. the service-account token, are skipped),
`resourceFieldRef` env, `kubectl logs/exec/port-forward`.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import os
import platform
import re
import shlex
import signal
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import kubernetes

from .processes import ManagedProcess
from .service_proxy import ProxySpec, ServiceProxy

log = logging.getLogger("localcluster.node_agent")

POD_ADDRESS_PREFIX = "127.0.1."
POD_ADDRESS_NUMBERS = range(1, 251)
HOST_IP = "127.0.0.1"
POLL_SECONDS = 0.5
# The kubelet's defaults: node status and lease renewed every 10 s, lease valid 40 s.
HEARTBEAT_SECONDS = 10.0
LEASE_DURATION_SECONDS = 40
NODE_LEASE_NAMESPACE = "kube-node-lease"
# What the agent advertises, not what the machine has: room for the tests' and
# the demo's pods (ten 250m-CPU replicas and more), so the scheduler's fit
# checks pass and the HPA's maxReplicas is the only limit.
NODE_CAPACITY = {"cpu": "16", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
# Kubelet constants: SIGTERM gets at least this long after a preStop hook used the
# grace period up, and a pod removed from the API without grace gets it too.
MINIMUM_GRACE_SECONDS = 2.0
BACKOFF_INITIAL_SECONDS, BACKOFF_MAX_SECONDS = 10.0, 300.0
BACKOFF_RESET_SECONDS = 600.0
PROBE_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
                  "initialDelaySeconds": 0}
API_TIMEOUT = (3, 10)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


# --- the API, as plain dicts ---------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


class Api:
    """The few API calls a kubelet makes, through the kubernetes client's
    configuration and connection pool, with JSON dicts in and out (the
    manifests' own field names, no model classes)."""

    def __init__(self, kubeconfig: Path | str):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        # One connection per pod worker and probe thread at worst; the default (10) would churn.
        configuration.connection_pool_maxsize = 64
        self.client = kubernetes.client.ApiClient(configuration)

    def request(self, method: str, path: str, body=None, query=None, content_type: str | None = None):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        serialized = self.client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(*serialized, _request_timeout=API_TIMEOUT)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiError(response.status, data.decode(errors="replace"))
        return json.loads(data) if data else None

    def get(self, path: str, query=None) -> dict | None:
        try:
            return self.request("GET", path, query=query)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def strategic_patch(self, path: str, body: dict) -> dict:
        return self.request("PATCH", path, body, content_type="application/strategic-merge-patch+json")

    def node_pods(self, node: str) -> list[dict]:
        return self.request("GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})["items"]


# --- addresses ---------------------------------------------------------------


def listening_addresses() -> set[str]:
    """IPv4 addresses some process on this machine listens on (from /proc/net/tcp)."""
    addresses = set()
    for line in _read("/proc/net/tcp").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            packed = bytes.fromhex(fields[1].split(":")[0])
            addresses.add(socket.inet_ntoa(packed[::-1]))
    return addresses


class AddressPool:
    """Pod IPs 127.0.1.1-250, lowest free first, reused once released.

    An address something already listens on is skipped: another agent (a
    second cluster on the same machine) may be using it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[str] = set()

    def allocate(self, preferred: str | None = None) -> str:
        with self._lock:
            taken = self._used | listening_addresses()
            if preferred and preferred.startswith(POD_ADDRESS_PREFIX) and preferred not in taken:
                choice = preferred
            else:
                choice = next((f"{POD_ADDRESS_PREFIX}{n}" for n in POD_ADDRESS_NUMBERS
                               if f"{POD_ADDRESS_PREFIX}{n}" not in taken), None)
                if choice is None:
                    raise RuntimeError("no free pod address: all of 127.0.1.1-250 are in use")
            self._used.add(choice)
            return choice

    def release(self, address: str) -> None:
        with self._lock:
            self._used.discard(address)


# --- from a container spec to a process ------------------------------------------


class ContainerConfigError(Exception):
    """The container cannot be started as written (the kubelet's CreateContainerConfigError)."""


def image_repository(image: str) -> str:
    """`registry:5000/team/app:1.0@sha256:...` -> `registry:5000/team/app`."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


def container_argv(container: dict, image_commands: dict[str, str]) -> list[str]:
    image = container.get("image", "")
    executable = image_commands.get(image) or image_commands.get(image_repository(image))
    if executable is None:
        raise ContainerConfigError(f"image {image!r} has no --image-command mapping")
    command = container.get("command") or []
    return [executable, *command[1:], *(container.get("args") or [])]


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_references(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, unknown ones kept, $$ escapes."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


@dataclass(frozen=True)
class Mount:
    path: str  # inside the "container"
    host: Path  # where it really is


def rewrite_value(value: str, pod_ip: str, mounts: list[Mount]) -> str:
    """The container-runtime substitute for one value: all-interfaces -> pod IP,
    paths under a mount -> the volume's directory. `KEY=value` tokens are
    rewritten on their value side."""
    key, sep, rest = value.partition("=")
    if sep and not key.startswith("/") and rest:
        return f"{key}={rewrite_value(rest, pod_ip, mounts)}"
    for wildcard in ("0.0.0.0", "::", "[::]"):
        if value == wildcard:
            return pod_ip
        if value.startswith(wildcard + ":") and value[len(wildcard) + 1:].isdigit():
            return pod_ip + value[len(wildcard):]
    for mount in mounts:  # longest mountPath first
        if value == mount.path or value.startswith(mount.path.rstrip("/") + "/"):
            return str(mount.host) + value[len(mount.path.rstrip("/")):]
    return value


def field_value(pod: dict, path: str, pod_ip: str) -> str:
    """The downward API's fieldRef paths."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""), "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": HOST_IP, "status.hostIPs": HOST_IP,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


class EnvSource:
    """ConfigMap and Secret data for env references (the Node authorizer lets a
    node read those its pods reference)."""

    def __init__(self, api: Api, namespace: str):
        self.api, self.namespace = api, namespace

    def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        plural = "configmaps" if kind == "configMap" else "secrets"
        obj = self.api.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f"{kind} {name!r} not found")
        data = obj.get("data") or {}
        if kind == "secret":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return dict(data)


def _env_from_value(entry: dict, pod: dict, pod_ip: str, source: EnvSource) -> str | None:
    value_from = entry["valueFrom"]
    if "fieldRef" in value_from:
        return field_value(pod, value_from["fieldRef"]["fieldPath"], pod_ip)
    for kind in ("configMap", "secret"):
        ref = value_from.get(f"{kind}KeyRef")
        if ref:
            data = source.data(kind, ref["name"], ref.get("optional", False))
            if data is None or (ref["key"] not in data and ref.get("optional")):
                return None
            if ref["key"] not in data:
                raise ContainerConfigError(f"key {ref['key']!r} not in {kind} {ref['name']!r}")
            return data[ref["key"]]
    log.warning("env %s: unsupported valueFrom %s, left unset", entry["name"], list(value_from))
    return None


def container_env(pod: dict, container: dict, pod_ip: str, mounts: list[Mount], source: EnvSource) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env in
    order with $(VAR) expansion), after the runtime substitute's rewrites."""
    env: dict[str, str] = {}
    for entry in container.get("envFrom") or []:
        for kind in ("configMap", "secret"):
            ref = entry.get(f"{kind}Ref")
            if ref:
                data = source.data(kind, ref["name"], ref.get("optional", False)) or {}
                env.update({entry.get("prefix", "") + k: v for k, v in data.items()})
    for entry in container.get("env") or []:
        if "valueFrom" in entry:
            value = _env_from_value(entry, pod, pod_ip, source)
            if value is not None:
                env[entry["name"]] = value
        else:
            env[entry["name"]] = expand_references(entry.get("value", ""), env)
    return {name: rewrite_value(value, pod_ip, mounts) for name, value in env.items()}


def base_environment(pod: dict) -> dict[str, str]:
    """What an image and the runtime give every container before the pod's env:
    a PATH, a locale, and HOSTNAME = the pod's name. Nothing leaks in from the agent."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOSTNAME": pod["metadata"]["name"],
    }


# --- probes ------------------------------------------------------------------


def resolve_port(port, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ContainerConfigError(f"container {container['name']!r} has no port named {port!r}")


@dataclass(frozen=True)
class Probe:
    kind: str  # startup, readiness, liveness
    spec: dict
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int
    initial_delay: float

    @classmethod
    def from_container(cls, kind: str, container: dict) -> "Probe | None":
        spec = container.get(f"{kind}Probe")
        if not spec:
            return None
        values = {**PROBE_DEFAULTS, **{k: v for k, v in spec.items() if k in PROBE_DEFAULTS}}
        return cls(kind, spec, values["periodSeconds"], values["timeoutSeconds"], values["successThreshold"],
                   values["failureThreshold"], values["initialDelaySeconds"])

    @property
    def termination_grace(self) -> float | None:
        return self.spec.get("terminationGracePeriodSeconds")

    def check(self, pod_ip: str, container: dict) -> tuple[bool, str]:
        try:
            if "httpGet" in self.spec:
                return self._http(self.spec["httpGet"], pod_ip, container)
            if "tcpSocket" in self.spec:
                action = self.spec["tcpSocket"]
                port = resolve_port(action["port"], container)
                socket.create_connection((action.get("host") or pod_ip, port), timeout=self.timeout).close()
                return True, ""
        except (OSError, http.client.HTTPException, ContainerConfigError) as error:
            return False, f"{self.kind} probe failed: {error}"
        return False, f"{self.kind} probe: only httpGet and tcpSocket are supported here"

    def _http(self, action: dict, pod_ip: str, container: dict) -> tuple[bool, str]:
        host, port = action.get("host") or pod_ip, resolve_port(action["port"], container)
        if action.get("scheme", "HTTP").upper() == "HTTPS":
            # The kubelet does not verify a probe's certificate either.
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=ssl._create_unverified_context())  # noqa: S323
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            headers = {"User-Agent": "kube-probe/1.33", "Accept": "*/*"}
            headers.update({h["name"]: h["value"] for h in action.get("httpHeaders") or []})
            connection.request("GET", action.get("path") or "/", headers=headers)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        # The kubelet counts any status in [200, 400) as success.
        if 200 <= response.status < 400:
            return True, ""
        return False, f"{self.kind} probe failed: HTTP probe failed with statuscode: {response.status}"


# --- one container -------------------------------------------------------------


class Container:
    """One container of a pod across its restarts: process, probes, status.

    Started, stopped and restarted only from its pod's worker thread; probe
    threads only read it and set flags, then wake the worker.
    """

    def __init__(self, pod: "PodWorker", spec: dict, previous: dict | None):
        self.pod, self.spec, self.name = pod, spec, spec["name"]
        self.probes = {kind: Probe.from_container(kind, spec) for kind in ("startup", "readiness", "liveness")}
        self.process: ManagedProcess | None = None
        self.generation = 0  # processes started so far
        self._probes_stop = threading.Event()
        self.restart_count = (previous or {}).get("restartCount", 0) + (1 if (previous or {}).get("containerID") else 0)
        self.started = self.ready = False
        self.started_at: str | None = None
        self.started_monotonic = 0.0
        self.executable = ""
        self.last_termination: dict | None = None
        self.waiting = {"reason": "ContainerCreating"}
        self.crashes = 0
        self.next_start = 0.0
        self.restart_reason: str | None = None

    # lifecycle ---------------------------------------------------------------

    def due(self) -> bool:
        return self.process is None and time.monotonic() >= self.next_start

    def start(self) -> None:
        try:
            argv, env = self.pod.process_spec(self.spec)
        except ContainerConfigError as error:
            self._cannot_start("CreateContainerConfigError", str(error))
            return
        self.executable = argv[0]
        process = ManagedProcess(
            f"{self.pod.key}/{self.name}", argv, self.pod.directory / "logs" / f"{self.name}.log", env=env,
            cwd=self.pod.directory,
        )
        try:
            process.start()
        except OSError as error:
            self._cannot_start("RunContainerError", str(error))
            return
        if self.generation:
            self.restart_count += 1
        self.process, self.generation = process, self.generation + 1
        self.started_at, self.started_monotonic = _now(), time.monotonic()
        self.waiting, self.restart_reason = None, None
        # Without a startup probe a running container counts as started; without a
        # readiness probe a started one counts as ready (kubelet semantics).
        self.started = self.probes["startup"] is None
        self.ready = self.started and self.probes["readiness"] is None
        log.info("%s: started %s as pid %s", self.pod.key, self.name, process.pid)
        self._probes_stop = threading.Event()
        for probe in self.probes.values():
            if probe is not None:
                threading.Thread(target=self._probe_loop, args=(probe, self._probes_stop), daemon=True,
                                 name=f"{self.pod.key}/{self.name}/{probe.kind}").start()

    def stop_probes(self) -> None:
        self._probes_stop.set()

    def _cannot_start(self, reason: str, message: str) -> None:
        log.warning("%s: %s: %s", self.pod.key, self.name, message)
        self.waiting = {"reason": reason, "message": message}
        self.crashes += 1
        self.next_start = time.monotonic() + self._backoff()

    def _backoff(self) -> float:
        if self.crashes <= 1:
            return 0.0
        return min(BACKOFF_INITIAL_SECONDS * 2 ** (self.crashes - 2), BACKOFF_MAX_SECONDS)

    def check_exit(self) -> None:
        """Notice an exit or a probe-requested restart, and schedule the next start."""
        if self.process is None:
            return
        if self.restart_reason and self.process.alive:
            grace = self._restart_grace()
            log.info("%s: %s: %s, restarting (grace %.0f s)", self.pod.key, self.name, self.restart_reason, grace)
            end = time.monotonic() + grace
            self.kill(lambda: min(end, self.pod.deadline))
        if self.process.alive:
            return
        self.record_exit()
        if time.monotonic() - self.started_monotonic >= BACKOFF_RESET_SECONDS:
            self.crashes = 0
        self.crashes += 1
        delay = self._backoff()
        self.next_start = time.monotonic() + delay
        if delay:
            self.waiting = {"reason": "CrashLoopBackOff",
                            "message": f"back-off {delay:.0f}s restarting failed container={self.name}"}

    def _restart_grace(self) -> float:
        probe_grace = next((p.termination_grace for p in self.probes.values()
                            if p is not None and p.termination_grace is not None), None)
        return float(probe_grace if probe_grace is not None else self.pod.spec_grace())

    def record_exit(self) -> None:
        self.stop_probes()
        code = self.process.stop(0)
        finished = _now()
        self.last_termination = {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at, "finishedAt": finished, "containerID": f"local://{self.process.pid}",
        }
        log.info("%s: %s (pid %s) exited with %s", self.pod.key, self.name, self.process.pid, code)
        self.process, self.started, self.ready = None, False, False
        self.waiting = {"reason": "ContainerCreating"}

    def kill(self, deadline) -> None:
        """preStop, SIGTERM, and SIGKILL at `deadline()` (re-read: a second delete may shorten it)."""
        process = self.process
        if process is None:
            return
        self.stop_probes()
        self.ready = False
        self._pre_stop(process, deadline)
        # The kubelet's minimum: SIGTERM always gets 2 s, even when preStop used the grace up.
        floor = time.monotonic() + MINIMUM_GRACE_SECONDS
        process.signal(signal.SIGTERM)
        while process.alive and time.monotonic() < max(deadline(), floor):
            process.wait(0.1)
        if process.alive:
            log.info("%s: %s did not exit within its grace period: SIGKILL", self.pod.key, self.name)
        process.stop(0)

    def _pre_stop(self, process: ManagedProcess, deadline) -> None:
        hook = (self.spec.get("lifecycle") or {}).get("preStop")
        if not hook:
            return
        seconds = _pre_stop_sleep(hook)
        if seconds is not None:
            end = time.monotonic() + seconds
            while time.monotonic() < min(end, deadline()) and process.alive:
                time.sleep(0.1)
        elif "httpGet" in hook:
            probe = Probe("preStop", {"httpGet": hook["httpGet"]}, 0, max(1.0, deadline() - time.monotonic()), 1, 1, 0)
            ok, message = probe.check(self.pod.ip, self.spec)
            if not ok:
                log.warning("%s: %s: %s", self.pod.key, self.name, message)
        else:
            log.warning("%s: %s: preStop %s not supported here, skipped", self.pod.key, self.name, list(hook))

    # probes -------------------------------------------------------------------

    def _probe_loop(self, probe: Probe, stop: threading.Event) -> None:
        """One probe of one process, until that process is stopped (`stop` set)."""
        if stop.wait(probe.initial_delay):
            return
        successes = failures = 0
        while not stop.is_set():
            if probe.kind == "startup" and self.started:
                return
            if probe.kind != "startup" and not self.started:
                stop.wait(0.1)  # the kubelet holds these off until the startup probe passed
                continue
            ok, message = probe.check(self.pod.ip, self.spec)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not ok:
                # A startup probe failing while the model loads is expected: not worth a log line each time.
                level = logging.DEBUG if probe.kind == "startup" else logging.INFO
                log.log(level, "%s: %s: %s", self.pod.key, self.name, message)
            if stop.is_set() or self._apply(probe, ok, successes, failures, message):
                return
            stop.wait(probe.period)

    def _apply(self, probe: Probe, ok: bool, successes: int, failures: int, message: str) -> bool:
        """Act on a probe result; True when this probe is done for this process."""
        if probe.kind == "startup":
            if ok:
                self.started = True
                self.ready = self.probes["readiness"] is None
            elif failures >= probe.failure_threshold:
                self.restart_reason = message
            self.pod.wake()
            return ok or failures >= probe.failure_threshold
        if probe.kind == "readiness":
            if ok and successes >= probe.success_threshold:
                self.ready = True
            elif not ok and failures >= probe.failure_threshold:
                self.ready = False
            self.pod.wake()
            return False
        if not ok and failures >= probe.failure_threshold:
            self.restart_reason = message
            self.pod.wake()
            return True
        return False

    # status -------------------------------------------------------------------

    def status(self) -> dict:
        state = {"running": None, "waiting": None, "terminated": None}
        if self.process is not None:
            state["running"] = {"startedAt": self.started_at}
        else:
            state["waiting"] = self.waiting or {"reason": "ContainerCreating"}
        last = {"running": None, "waiting": None, "terminated": self.last_termination}
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"local://{self.executable}" if self.executable else "",
            "containerID": f"local://{self.process.pid}" if self.process else None,
            "ready": self.ready and self.process is not None,
            "started": self.started and self.process is not None,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": last if self.last_termination else {"running": None, "waiting": None, "terminated": None},
        }

    def terminated_status(self) -> dict:
        status = self.status()
        status["state"] = {"running": None, "waiting": None, "terminated": self.last_termination}
        status.update(ready=False, started=False, containerID=(self.last_termination or {}).get("containerID"))
        return status


def _pre_stop_sleep(hook: dict) -> float | None:
    """Seconds of a `sleep` preStop action, or of an exec that only sleeps."""
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = (hook.get("exec") or {}).get("command") or []
    if len(command) == 3 and command[1] == "-c" and command[0].endswith("sh"):
        command = shlex.split(command[2])
    if len(command) == 2 and Path(command[0]).name == "sleep":
        try:
            return float(command[1])
        except ValueError:
            return None
    return None


# --- one pod -------------------------------------------------------------------


class PodWorker(threading.Thread):
    """Runs one pod from binding to deletion, like the kubelet's pod worker."""

    def __init__(self, agent: "NodeAgent", pod: dict):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod = agent, pod
        self.uid, self.namespace, self.pod_name = meta["uid"], meta["namespace"], meta["name"]
        self.key = f"{self.namespace}/{self.pod_name}"
        self.directory = agent.workdir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.ip = ""
        self.gone = False  # removed from the API
        self.stopping = False  # terminating: probes stop
        self.shutdown = False  # the agent is stopping
        self.finished = False
        self.deadline = float("inf")
        self._termination_started = 0.0
        self._wake = threading.Event()
        previous = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses") or []}
        self.containers = [Container(self, spec, previous.get(spec["name"])) for spec in pod["spec"]["containers"]]
        self.start_time = pod.get("status", {}).get("startTime") or _now()
        self._transitions: dict[str, tuple[str, str]] = {}
        self._published: dict | None = None
        self._empty_dirs: dict[str, Path] = {}

    # called from the agent's poll loop ------------------------------------------

    def update(self, pod: dict | None) -> None:
        if pod is None:
            self.gone = True
        else:
            self.pod = pod
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if self.stopping and grace is not None:
                self.deadline = min(self.deadline, self._termination_started + grace)
        self.wake()

    def request_shutdown(self) -> None:
        self.shutdown = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def spec_grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    # the pod's life -------------------------------------------------------------

    def run(self) -> None:
        try:
            self._set_up()
            while not self._termination_requested():
                for container in self.containers:
                    container.check_exit()
                    if container.due() and not self._termination_requested():
                        container.start()
                self.publish()
                self._wake.wait(0.2)
                self._wake.clear()
            self._terminate()
        except Exception:
            log.exception("%s: pod worker failed; killing its processes", self.key)
            for container in self.containers:
                if container.process:
                    container.process.stop(0)
        finally:
            if self.ip:
                self.agent.addresses.release(self.ip)
            self.finished = True

    def _termination_requested(self) -> bool:
        return self.gone or self.shutdown or bool(self.pod["metadata"].get("deletionTimestamp"))

    def _set_up(self) -> None:
        preferred = self.pod.get("status", {}).get("podIP")
        self.ip = self.agent.addresses.allocate(preferred)
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self._empty_dirs = self._create_empty_dirs()
        log.info("%s: pod IP %s, directory %s", self.key, self.ip, self.directory)

    def _create_empty_dirs(self) -> dict[str, Path]:
        empty_dirs = {}
        for volume in self.pod["spec"].get("volumes") or []:
            if "emptyDir" in volume:
                empty_dirs[volume["name"]] = self.directory / "volumes" / volume["name"]
                empty_dirs[volume["name"]].mkdir(parents=True, exist_ok=True)
        return empty_dirs

    def _container_mounts(self, container: dict) -> list[Mount]:
        mounts = []
        for mount in container.get("volumeMounts") or []:
            host = self._empty_dirs.get(mount["name"])
            if host is None:
                continue  # service-account token and other unsupported volumes
            if mount.get("subPath"):
                host = host / mount["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(mount["mountPath"], host))
        return sorted(mounts, key=lambda m: len(m.path), reverse=True)

    def process_spec(self, container: dict) -> tuple[list[str], dict[str, str]]:
        """argv and env of a container, with the runtime substitute's rewrites."""
        mounts = self._container_mounts(container)
        env = container_env(self.pod, container, self.ip, mounts, EnvSource(self.agent.api, self.namespace))
        argv = container_argv(container, self.agent.image_commands)
        argv = [argv[0], *(rewrite_value(expand_references(arg, env), self.ip, mounts) for arg in argv[1:])]
        return argv, {**base_environment(self.pod), **env}

    def _terminate(self) -> None:
        if self.gone:
            grace = MINIMUM_GRACE_SECONDS
        elif self.shutdown and not self.pod["metadata"].get("deletionTimestamp"):
            grace = self.spec_grace()
        else:
            grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds", self.spec_grace()))
        self._termination_started = time.monotonic()
        self.deadline = self._termination_started + grace
        self.stopping = True
        for container in self.containers:
            container.stop_probes()
            container.ready = False
        log.info("%s: terminating (grace %.0f s)", self.key, grace)
        self.publish()  # not Ready at once, so proxies stop routing here
        killers = [threading.Thread(target=c.kill, args=(lambda: self.deadline,)) for c in self.containers]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join()
        for container in self.containers:
            if container.process is not None:
                container.record_exit()
        self._finish()

    def _finish(self) -> None:
        if self.gone:
            return
        self.publish(final=True)
        if self.pod["metadata"].get("deletionTimestamp"):
            try:
                self.agent.api.request(
                    "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                )
                log.info("%s: deleted", self.key)
            except ApiError as error:
                if error.status not in (404, 409):
                    log.warning("%s: final delete failed: %s", self.key, error)

    # status ----------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, _now())
        condition = {"type": kind, "status": status, "lastProbeTime": None,
                     "lastTransitionTime": self._transitions[kind][1]}
        # Explicit nulls: a strategic merge would otherwise keep a stale reason on a True condition.
        condition.update(reason=None, message=None)
        if not ok and reason:
            condition.update(reason=reason, message=message)
        return condition

    def _readiness_gates_pass(self) -> bool:
        conditions = {c["type"]: c.get("status") for c in self.pod.get("status", {}).get("conditions") or []}
        return all(conditions.get(g["conditionType"]) == "True" for g in self.pod["spec"].get("readinessGates") or [])

    def pod_status(self, final: bool = False) -> dict:
        statuses = [c.terminated_status() if final else c.status() for c in self.containers]
        unready = [s["name"] for s in statuses if not s["ready"]]
        containers_ready = not unready and not self.stopping
        message = f"containers with unready status: [{' '.join(unready)}]"
        return {
            "phase": self._phase(final, statuses),
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.ip, "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition("Initialized", True),
                self._condition("ContainersReady", containers_ready, "ContainersNotReady", message),
                self._condition("Ready", containers_ready and self._readiness_gates_pass(), "ContainersNotReady",
                                message),
            ],
            "containerStatuses": statuses,
        }

    def _phase(self, final: bool, statuses: list[dict]) -> str:
        if final and self.pod["metadata"].get("deletionTimestamp"):
            # As the kubelet does for a deleted pod whose containers have all stopped.
            codes = [(s["state"]["terminated"] or {}).get("exitCode") for s in statuses]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        ever_ran = all(c.generation or c.last_termination for c in self.containers)
        return "Running" if ever_ran else "Pending"

    def publish(self, final: bool = False) -> None:
        """Patch pods/status when it changed (strategic merge: conditions by type,
        containerStatuses by name; explicit nulls clear the states no longer true)."""
        if self.gone:
            return
        status = self.pod_status(final)
        if status == self._published:
            return
        try:
            self.agent.api.strategic_patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status", {"status": status})
            self._published = status
        except Exception as error:  # noqa: BLE001 - retried on the next tick
            log.warning("%s: status update failed: %s", self.key, error)


# --- the node ------------------------------------------------------------------


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


class NodeHeartbeat(threading.Thread):
    """Registers the Node, then keeps it Ready: its Ready condition's heartbeat and
    its Lease renewed every 10 s, well inside the node lifecycle controller's
    grace period (50 s), so it is never marked NotReady or tainted."""

    def __init__(self, api: Api, node_name: str):
        super().__init__(name="node-heartbeat", daemon=True)
        self.api, self.node_name = api, node_name
        self.since = _now()
        self.node_uid = ""
        self._stop_event = threading.Event()

    def register(self) -> None:
        version = self.api.get("/version")["gitVersion"]
        try:
            node = self.api.request("POST", "/api/v1/nodes", self._node(version))
        except ApiError as error:
            if error.status != 409:
                raise
            node = self.api.get(f"/api/v1/nodes/{self.node_name}")
        self.node_uid = node["metadata"]["uid"]
        self._patch_status(self._node(version)["status"])
        self._renew_lease()
        log.info("node %s registered (advertising %s)", self.node_name, NODE_CAPACITY)

    def _node(self, version: str) -> dict:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY,
                "conditions": self._conditions(),
                "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.node_name}],
                # No kubelet API is served: `kubectl logs/exec` have nowhere to go.
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": _read("/etc/machine-id"), "systemUUID": "", "bootID": _read("/proc/sys/kernel/random/boot_id"),
                    "kernelVersion": platform.release(), "osImage": _os_image(),
                    "containerRuntimeVersion": "localcluster://0.1.0", "kubeletVersion": version,
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": arch,
                },
            },
        }

    def _conditions(self) -> list[dict]:
        now = _now()
        rows = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "node agent has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "node agent is posting ready status"),
        ]
        return [{"type": kind, "status": status, "reason": reason, "message": message,
                 "lastHeartbeatTime": now, "lastTransitionTime": self.since}
                for kind, status, reason, message in rows]

    def _patch_status(self, status: dict) -> None:
        self.api.strategic_patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status})

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{self.node_name}"
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": _now_micro()}
        try:
            self.api.request("PATCH", path, {"spec": spec}, content_type="application/merge-patch+json")
        except ApiError as error:
            if error.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self.node_uid}
            self.api.request("POST", path.rsplit("/", 1)[0], {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": NODE_LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": spec,
            })

    def run(self) -> None:
        while not self._stop_event.wait(HEARTBEAT_SECONDS):
            try:
                self._patch_status({"conditions": self._conditions()})
                self._renew_lease()
            except Exception as error:  # noqa: BLE001 - the next beat retries
                log.warning("node heartbeat failed: %s", error)

    def stop(self) -> None:
        self._stop_event.set()


class NodeAgent:
    """The agent as a class: `start()` registers the node and begins running pods;
    `stop()` stops every pod gracefully (preStop, SIGTERM, grace), then the proxies."""

    def __init__(
        self,
        kubeconfig: Path | str,
        node_name: str,
        workdir: Path | str,
        image_commands: dict[str, str],
        proxies=(),
        poll_seconds: float = POLL_SECONDS,
    ):
        self.api = Api(kubeconfig)
        self.node_name = node_name
        self.workdir = Path(workdir).resolve()
        self.image_commands = dict(image_commands)
        self.proxies = [ServiceProxy(p if isinstance(p, ProxySpec) else ProxySpec.parse(p)) for p in proxies]
        self.poll_seconds = poll_seconds
        self.addresses = AddressPool()
        self.workers: dict[str, PodWorker] = {}
        self.heartbeat = NodeHeartbeat(self.api, node_name)
        self._lock = threading.Lock()
        self._shutting_down = False
        self._stop_event = threading.Event()
        self._loop: threading.Thread | None = None

    def __enter__(self) -> "NodeAgent":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "NodeAgent":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.heartbeat.register()
        self.heartbeat.start()
        for proxy in self.proxies:
            proxy.start()
        self._loop = threading.Thread(target=self._run_loop, name="node-agent-sync", daemon=True)
        self._loop.start()
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._shutting_down = True
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.request_shutdown()
        for worker in workers:
            worker.join()
        # The sync loop ran until now so that the proxies saw the pods go unready while they drained.
        self._stop_event.set()
        self._loop.join()
        for proxy in self.proxies:
            proxy.stop()
        self.heartbeat.stop()
        self._loop = None
        log.info("node agent stopped")

    def _run_loop(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.sync()
            except Exception as error:  # noqa: BLE001 - the API may be restarting; poll again
                log.warning("sync failed: %s", error)
            self._stop_event.wait(self.poll_seconds)

    def sync(self) -> None:
        pods = self.api.node_pods(self.node_name)
        self._sync_workers(pods)
        for proxy in self.proxies:
            spec = proxy.spec
            proxy.refresh(self.api.get(f"/api/v1/namespaces/{spec.namespace}/services/{spec.name}"), pods)

    def _sync_workers(self, pods: list[dict]) -> None:
        listed = set()
        with self._lock:
            for pod in pods:
                uid = pod["metadata"]["uid"]
                listed.add(uid)
                worker = self.workers.get(uid)
                if worker is not None:
                    worker.update(pod)
                elif not self._shutting_down:
                    self._adopt(pod)
            for uid, worker in list(self.workers.items()):
                if uid not in listed:
                    worker.update(None)
                if worker.finished:
                    del self.workers[uid]

    def _adopt(self, pod: dict) -> None:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            # Deleted before this agent ran it: no process exists (a previous
            # agent's died with it), so it only needs the final delete.
            try:
                self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                 {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
            except ApiError as error:
                if error.status not in (404, 409):
                    log.warning("deleting %s/%s failed: %s", meta["namespace"], meta["name"], error)
            return
        worker = PodWorker(self, pod)
        self.workers[meta["uid"]] = worker
        worker.start()


# --- running it as a process --------------------------------------------------


def _image_command(text: str) -> tuple[str, str]:
    image, sep, path = text.partition("=")
    if not sep or not Path(path).is_absolute():
        raise argparse.ArgumentTypeError(f"--image-command wants IMAGE=/absolute/path, not {text!r}")
    return image, path


def agent_process(
    kubeconfig: Path | str,
    node_name: str,
    workdir: Path | str,
    image_commands: dict[str, str],
    proxies=(),
    log_path: Path | str | None = None,
    stop_timeout: float = 90.0,
) -> ManagedProcess:
    """An unstarted ManagedProcess running `python -m localcluster.node_agent`.

    `stop_timeout` must exceed the longest terminationGracePeriodSeconds of its
    pods (the chart's is 75 s), or their drain is cut short by SIGKILL."""
    argv = [sys.executable, "-m", "localcluster.node_agent", "--kubeconfig", str(kubeconfig),
            "--node-name", node_name, "--workdir", str(workdir)]
    for image, path in image_commands.items():
        argv += ["--image-command", f"{image}={path}"]
    for proxy in proxies:
        if isinstance(proxy, ProxySpec):
            service = f"{proxy.namespace}/{proxy.name}" + (f":{proxy.service_port}" if proxy.service_port else "")
            proxy = f"{service}={proxy.listen_host}:{proxy.listen_port}"
        argv += ["--proxy", proxy]
    package_parent = str(Path(__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    log_path = log_path or Path(workdir) / "node-agent.log"
    return ManagedProcess(f"node-agent-{node_name}", argv, log_path, env=env, stop_timeout=stop_timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.node_agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--workdir", required=True, help="pod directories and logs go here")
    parser.add_argument("--image-command", action="append", type=_image_command, default=[],
                        metavar="IMAGE=/ABS/PATH", help="run this executable for containers of IMAGE (repository or repository:tag)")
    parser.add_argument("--proxy", action="append", type=ProxySpec.parse, default=[],
                        metavar="NAMESPACE/SERVICE[:PORT]=HOST:PORT", help="serve this Service on HOST:PORT")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = NodeAgent(args.kubeconfig, args.node_name, args.workdir, dict(args.image_command), args.proxy)
    agent.start()
    while not stop.wait(1.0):
        pass
    log.info("signal received: stopping pods gracefully")
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
