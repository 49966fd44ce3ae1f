"""A real Kubernetes node joined to the local control plane: containerd,
runc, the CNI bridge plugin, and the pinned kubelet and kube-proxy.

    with ControlPlane(tmp / "cp", advertise_address=HOST_IP) as cp, RealNode(cp, tmp / "node") as node:
        ...  # pods scheduled to node.name run as runc containers

The node lives in a network namespace of its own (`inferscale-node`): a veth
pair gives it NODE_IP, reachable from the host, and the bridge `cni0` with
its pods' 10.88.0.0/16 stays inside, with every iptables rule the node's
components (kube-proxy's Services and NodePorts included) write. Deleting
the namespace takes those with it. The host routes POD_CIDR to the node,
as a cluster's network does, and SERVICE_CIDR, as a node running kube-proxy
would reach Services; and a control plane that advertises HOST_IP
is reached by pods through the `kubernetes` Service (netns_relay.py).

What cannot be kept per node, and why one node per machine is the limit
(a second one is refused, see NodeBusy):
- the sysctls the kubelet writes (vm.overcommit_memory, kernel.panic,
  kernel.panic_on_oops) are not namespaced: recorded first, restored at stop;
- containerd's socket is /run/containerd/containerd.sock, where cAdvisor
  looks for it, and containerd keeps shim sockets and runc state under
  /run/containerd whatever its config says;
- the kubelet's root and containerd's images are in /var/lib/inferscale-node,
  outside the workdir: the kubelet's unix sockets need a short path;
- the CRI plugin mounts pod network namespaces under /run/netns, libcni
  caches results in /var/lib/cni, and the kubelet links container logs from
  /var/log/containers;
- the kubelet's cgroups (cgroupfs driver, cgroup v1) are /kubepods in every
  hierarchy.

Settings this machine needs (facts from issue 8): root lacks CAP_SYS_RESOURCE,
so containerd must not raise oom_score_adj (restrict_oom_score_adj) and the
kubelet must not lower its own (oomScoreAdj 0); cgroup v1 needs the cgroupfs
driver and failCgroupV1 false. The namespace is entered with
`nsenter --net` only: `ip netns exec` also remounts /sys, hiding the cgroup
mounts from the kubelet. No registry is reachable, so the sandbox image is
ours (cluster/pause, built by `ci/tools.sh node`) and is imported, not pulled.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence, Set
from pathlib import Path

import yaml

from . import dns, netns_relay
from .binaries import binary, image_archive
from .controlplane import SERVICE_CIDR, ControlPlane
from .processes import LockHeld, ManagedProcess, ProcessGroup, hold_lock, undone_on_failure, wait_until

log = logging.getLogger(__name__)

NODE_NAME = "inferscale-node"
NETNS = Path("/run/netns/inferscale-node")
HOST_IF, NODE_IF = "inferscale0", "eth0"
HOST_LINK = Path("/sys/class/net") / HOST_IF
KUBE_PROXY_HEALTHZ_PORT = 10256
HOST_IP, NODE_IP = "10.87.0.1", "10.87.0.2"
POD_CIDR = "10.88.0.0/16"
CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
CONTAINERD_RUN_DIR = Path("/run/containerd")
# The kubelet's root (its unix sockets want a short path: a test's workdir can
# pass the 108-byte limit) and containerd's images and snapshots.
NODE_DIR = Path("/var/lib/inferscale-node")
CNI_BIN_DIR = "/usr/lib/cni"
CNI_NETWORK = "inferscale-pods"
# Fixed paths outside the workdir where the node leaves files of its pods:
# libcni's result cache (named after the network) and the kubelet's log links.
CNI_CACHE = Path("/var/lib/cni/results")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
PAUSE_IMAGE = "localhost/inferscale/pause:v1"
LOCK_PATH = Path("/run/inferscale-node.lock")
# What the next node needs to clean up after this one if its owner is SIGKILLed.
STATE_PATH = Path("/run/inferscale-node.json")
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The bridge-nf-call-* sysctls; they exist only while br_netfilter is loaded.
BRIDGE_SYSCTLS = Path("/proc/sys/net/bridge")
START_TIMEOUT = 120.0
# How long a killed node's containerd may take to let go of its socket.
EXITING_CONTAINERD_SECONDS = 20.0
MNT_DETACH = 2


class NodeBusy(RuntimeError):
    """Another node holds this machine's fixed paths."""


class UnsupportedMachine(RuntimeError):
    """This machine cannot run the node at all."""


def require_cgroup_v1() -> None:
    """The kubelet's cgroupfs driver here and the teardown's walk of
    CGROUP_ROOT/<controller>/kubepods assume the v1 hierarchies: on the unified
    v2 hierarchy the pods' cgroups would be elsewhere, and outlive the node."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        raise UnsupportedMachine(
            f"this machine runs cgroup v2 ({CGROUP_ROOT} is the unified hierarchy) and the node supports cgroup v1 "
            "only: boot with systemd.unified_cgroup_hierarchy=0, or run the loop on kind (ci/kind_e2e.sh)"
        )


def pause_archive() -> Path:
    return image_archive("pause.oci.tar")


def run(*argv: str, netns: bool = False) -> str:
    """Run a short command (in the node's namespace with `netns`), failing loudly."""
    prefix = ["nsenter", f"--net={NETNS}", "--"] if netns else []
    result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, as the kernel spells it (octal escapes decoded)."""
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [point.encode().decode("unicode_escape") for point in points]


def read_sysctls() -> dict[str, str]:
    return {name: (Path("/proc/sys") / name).read_text().strip() for name in KUBELET_SYSCTLS}


class RealNode:
    """Context manager; `start()` returns once the Node is Ready, `stop()` leaves nothing behind."""

    def __init__(
        self,
        control_plane: ControlPlane,
        workdir: Path | str,
        name: str = NODE_NAME,
        images: Sequence[Path] = (),
        named_images: Mapping[str, Path] | None = None,
    ):
        """`images`: docker archives to import, each under the names it holds;
        `named_images`: repository -> OCI archive whose index holds only the tag.
        Pods run them with `imagePullPolicy: IfNotPresent` or `Never`."""
        self.control_plane = control_plane
        self.workdir = Path(workdir)
        self.name = name
        self.images = tuple(Path(image) for image in images)
        self.named_images = dict(named_images or {})
        self.start_seconds: float | None = None
        self._group = ProcessGroup()
        self._lock: int | None = None
        self._sysctls: dict[str, str] = {}
        # What /run/netns held before this node touched it; None until recorded.
        self._netns_before: set[str] | None = None
        self._mounts_before: set[str] = set()

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def processes(self) -> list[ManagedProcess]:
        return list(self._group.processes)

    def start(self) -> RealNode:
        started = time.monotonic()
        require_cgroup_v1()
        with undone_on_failure(self.stop):
            self._take_machine()
            self._sysctls = read_sysctls()
            STATE_PATH.write_text(json.dumps({"workdir": str(self.workdir.resolve()), "sysctls": self._sysctls}))
            self._netns_before = set(os.listdir(NETNS.parent)) if NETNS.parent.exists() else set()
            self._mounts_before = set(mount_points())
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._create_network()
            self._start_containerd()
            self._start_kubelet()
            self._start_kube_proxy()
        self.start_seconds = time.monotonic() - started
        log.info("node %s Ready in %.1f s", self.name, self.start_seconds)
        return self

    def kill_container(self, container_id: str) -> int:
        """SIGKILL a container's first process from the node, as the kernel's OOM
        killer would: the kubelet sees it exit 137 and restarts the container.
        `container_id` is the status's containerID without `containerd://`.
        Returns its host pid."""
        pid = self.container_process(container_id, lambda status: status["NSpid"].split()[-1] == "1")
        os.kill(pid, signal.SIGKILL)
        return pid

    def container_process(self, container_id: str, matches: Callable[[dict[str, str]], bool]) -> int:
        """The host pid of the process of a container whose /proc status `matches`
        (its fields by name, e.g. Name and NSpid); runc puts a container's
        processes in a cgroup named after its id."""
        for status_path in Path("/proc").glob("[0-9]*/status"):
            try:
                cgroups = (status_path.parent / "cgroup").read_text().splitlines()
                status = dict(line.split(":\t", 1) for line in status_path.read_text().splitlines() if ":\t" in line)
            except OSError:  # exited while we looked
                continue
            if any(line.endswith(f"/{container_id}") for line in cgroups) and matches(status):
                return int(status_path.parent.name)
        raise LookupError(f"no such process of container {container_id} on node {self.name}")

    def routed(self, service_port: str) -> list[str]:
        """The pod addresses, sorted, that kube-proxy's rules send `namespace/service:port`
        to. They trail the EndpointSlices by a sync; until its first, a Service
        without endpoints is rejected, which a client sees as connection refused."""
        rules = run("iptables-save", "-t", "nat", netns=True)
        marker = f'--comment "{service_port} -> '
        return sorted(
            line.split(marker, 1)[1].split(":", 1)[0]
            for line in rules.splitlines()
            if line.startswith("-A KUBE-SVC-") and marker in line
        )

    def stop(self) -> None:
        """Stop the kubelet, the pods' containers and containerd; unmount, remove
        cgroups and the namespace; restore the sysctls."""
        if self._lock is None:
            return
        errors: list[Exception] = []
        interrupt: KeyboardInterrupt | None = None
        for step in (
            self._group.stop,
            self._kill_leftover_pods,
            lambda: self._unmount([NODE_DIR, CONTAINERD_RUN_DIR]),
            self._remove_cgroups,
            self._release_netns,
            _delete_host_link,
            lambda: _remove_pod_files(self.workdir.resolve()),
            _remove_node_dirs,
            self._restore_sysctls,
            lambda: STATE_PATH.unlink(missing_ok=True),
        ):
            while True:
                try:
                    step()
                except KeyboardInterrupt as pressed:
                    # Ctrl-C again (or a TERM) while tearing down: a half-done
                    # teardown leaves mounts, cgroups and the namespace for the
                    # next node to trip on. Every step is idempotent, so the
                    # interrupted one runs again, then the rest.
                    interrupt = pressed
                    continue
                except Exception as error:  # one failed step must not keep the others from cleaning up
                    log.exception("node teardown step failed")
                    errors.append(error)
                break
        os.close(self._lock)
        self._lock = None
        # A failure first: the caller must learn that something was left behind;
        # an interrupt only asked to stop, which is done.
        if errors:
            raise errors[0]
        if interrupt is not None:
            raise interrupt

    # --- one node per machine ----------------------------------------------

    def _take_machine(self) -> None:
        try:
            fd = hold_lock(LOCK_PATH)
        except LockHeld as held:
            raise NodeBusy(
                f"a node already runs on this machine (pid {held.holder} holds {LOCK_PATH}); "
                "one node per machine: the kubelet and containerd use fixed paths"
            ) from None
        if not _stops_serving(CONTAINERD_SOCKET, EXITING_CONTAINERD_SECONDS):
            os.close(fd)
            raise NodeBusy(
                f"a containerd that is not this node's has served {CONTAINERD_SOCKET} for "
                f"{EXITING_CONTAINERD_SECONDS:g} s (another node's, or one outside this project: most likely the "
                "system's containerd.service, which Debian's containerd package enables at boot; stop it with "
                "`systemctl disable --now containerd`); the node needs that path"
            )
        self._lock = fd
        if STATE_PATH.exists() or NETNS.exists() or CONTAINERD_SOCKET.exists() or HOST_LINK.exists():
            self._clear_killed_run()

    def _clear_killed_run(self) -> None:
        """The lock was free, so these are from a node whose owner was SIGKILLed
        (its processes died with it, see processes.py, but not the pods): clear the
        rest."""
        log.warning("clearing what a killed node left behind")
        state = json.loads(STATE_PATH.read_text()) if STATE_PATH.exists() else {}
        pod_namespaces = self._kill_leftover_pods()
        self._unmount([NODE_DIR, CONTAINERD_RUN_DIR])
        self._remove_cgroups()
        if NETNS.exists():
            run("ip", "netns", "delete", NETNS.name)
        _delete_host_link()
        _clear_pod_netns(pod_namespaces)
        if "workdir" in state:
            _remove_pod_files(Path(state["workdir"]))
        _remove_node_dirs()
        self._sysctls = state.get("sysctls", {})
        self._restore_sysctls()
        STATE_PATH.unlink(missing_ok=True)

    # --- network -----------------------------------------------------------

    def _create_network(self) -> None:
        # bridge-nf-call-iptables below needs br_netfilter, which stock kernels
        # build as a module that nothing else here loads. It stays loaded: the
        # module is the whole machine's, and others may rely on it by then.
        if not BRIDGE_SYSCTLS.exists():
            run("modprobe", "br_netfilter")
        run("ip", "netns", "add", NETNS.name)
        run("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NODE_IF, "netns", NETNS.name)
        run("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        run("ip", "link", "set", HOST_IF, "up")
        for argv in (
            ("ip", "addr", "add", f"{NODE_IP}/30", "dev", NODE_IF),
            ("ip", "link", "set", NODE_IF, "up"),
            ("ip", "link", "set", "lo", "up"),
            ("ip", "route", "add", "default", "via", HOST_IP),
            # The node routes between its eth0 and the pods' bridge, and Service
            # traffic between two pods on that bridge must pass kube-proxy's
            # rules; both settings belong to this namespace alone.
            ("sysctl", "-qw", "net.ipv4.ip_forward=1"),
            ("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"),
        ):
            run(*argv, netns=True)
        # Pod IPs reachable from the host, as from any machine of a cluster's
        # network. Service IPs too, through the node's kube-proxy rules, as on a
        # control-plane node: the aggregator reaches prometheus-adapter's Service
        # that way. Both routes go with the link.
        for cidr in (POD_CIDR, SERVICE_CIDR):
            run("ip", "route", "add", cidr, "via", NODE_IP, "dev", HOST_IF)
        self._write_cni_config()

    def _write_cni_config(self) -> None:
        """bridge + host-local + portmap; containerd brings up each pod's loopback itself."""
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    # kube-proxy sends a pod's traffic to its own Service back to it.
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "networks"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-inferscale.conflist").write_text(json.dumps(conflist, indent=2))

    # --- containerd --------------------------------------------------------

    def _containerd_config(self) -> Path:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{NODE_DIR / "containerd"}"
state = "{CONTAINERD_RUN_DIR}"
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{NODE_DIR / "opt"}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{self.workdir / "cni" / "net.d"}"
"""
        path = self.workdir / "containerd" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config)
        return path

    def _in_netns(self, name: str, argv: list[str], stop_timeout: float = 10.0) -> ManagedProcess:
        process = ManagedProcess(
            name,
            ["nsenter", f"--net={NETNS}", "--", *argv],
            self.workdir / "logs" / f"{name}.log",
            stop_timeout=stop_timeout,
        )
        return self._group.start(process)

    def _start_containerd(self) -> None:
        # Shims stay up until containerd shuts their tasks down, which it does
        # not do on exit: a short timeout, then stop() kills them with its session.
        containerd = self._in_netns(
            "containerd",
            ["containerd", "--config", str(self._containerd_config())],
            stop_timeout=3.0,
        )
        wait_until(lambda: self._ctr("version"), "containerd's socket", START_TIMEOUT, containerd)
        named = {
            PAUSE_IMAGE.rsplit(":", 1)[0]: pause_archive(),
            dns.IMAGE_NAME: dns.coredns_archive(),
            **self.named_images,
        }
        # --base-name names the image: the archive's index holds only the tag.
        for repository, archive in named.items():
            self._ctr("images", "import", "--base-name", repository, str(archive))
        for image in self.images:
            self._ctr("images", "import", str(image))

    def _ctr(self, *args: str) -> str:
        return run("ctr", "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io", *args)

    # --- kubelet -----------------------------------------------------------

    def _kubelet_config(self) -> Path:
        pki = self.control_plane.pki
        serving = pki.issue(
            f"kubelet-{self.name}",
            f"system:node:{self.name}",
            organizations=("system:nodes",),
            server=True,
            dns_names=(self.name,),
            ip_addresses=(NODE_IP,),
        )
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "oomScoreAdj": 0,
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca_cert)},
                "webhook": {"enabled": True},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.workdir.resolve() / "pod-logs"),
            "clusterDomain": dns.CLUSTER_DOMAIN,
            "clusterDNS": [dns.CLUSTER_DNS_IP],
            # This shared disk is often fuller than the default 10 %/15 % margins allow.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }
        path = self.workdir / "kubelet" / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start_kubelet(self) -> None:
        # The API server's timestamps have whole seconds.
        since = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        port = int(self.control_plane.api_url.rsplit(":", 1)[1])
        relays = {"netns-relay": ["--netns", str(NETNS)]}
        if self.control_plane.advertise_address == HOST_IP:
            relays["api-relay"] = ["--address", HOST_IP]
        for name, where in relays.items():
            self._group.start(
                ManagedProcess(
                    name,
                    [sys.executable, "-I", netns_relay.__file__, str(port), *where],
                    self.workdir / "logs" / f"{name}.log",
                )
            )
        kubelet = self._in_netns(
            "kubelet",
            [
                binary("kubelet"),
                f"--config={self._kubelet_config()}",
                f"--kubeconfig={self.control_plane.node_kubeconfig(self.name)}",
                f"--root-dir={NODE_DIR / 'kubelet'}",
                f"--hostname-override={self.name}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
            stop_timeout=15.0,
        )
        wait_until(lambda: self._ready_since(since), f"node {self.name} Ready", START_TIMEOUT, kubelet, interval=0.5)

    def _start_kube_proxy(self) -> None:
        """iptables mode, in the node's namespace like the kubelet, with the
        identity the default `system:node-proxier` binding expects."""
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.control_plane.kubeconfig_for("system:kube-proxy"))},
            "hostnameOverride": self.name,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": "127.0.0.1:10249",
            # nf_conntrack_max is the host's, read-only from this namespace.
            "conntrack": {"maxPerCore": 0},
        }
        path = self.workdir / "kube-proxy" / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        proxy = self._in_netns("kube-proxy", [binary("kube-proxy"), f"--config={path}", "--v=1"])
        wait_until(self._kube_proxy_synced, "kube-proxy's first sync", START_TIMEOUT, proxy, interval=0.5)

    @staticmethod
    def _kube_proxy_synced() -> bool:
        """Its /healthz answers 200 once the rules are written from the API's Services and EndpointSlices."""
        url = f"http://127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}/healthz"
        run(sys.executable, "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)", netns=True)
        return True

    def _ready_since(self, since: datetime.datetime) -> bool:
        """Ready as this kubelet reports it: a Node left by an earlier one still reads Ready for a while."""
        node = self.control_plane.api.get(f"/api/v1/nodes/{self.name}")
        return any(
            c["type"] == "Ready"
            and c["status"] == "True"
            and datetime.datetime.fromisoformat(c["lastHeartbeatTime"].replace("Z", "+00:00")) >= since
            for c in node["status"].get("conditions", [])
        )

    # --- teardown ----------------------------------------------------------

    def _kill_leftover_pods(self) -> set[int]:
        """SIGKILL what still runs in a pod's cgroup: the kubelet stops without
        stopping its pods, and runc puts them in sessions of their own. Returns
        the network namespaces (inode numbers) they were in."""
        namespaces = set()
        for procs in CGROUP_ROOT.glob("*/kubepods/**/cgroup.procs"):
            for pid in procs.read_text().split():
                with contextlib.suppress(OSError):  # gone meanwhile
                    namespaces.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
                    os.kill(int(pid), signal.SIGKILL)
        return namespaces

    @staticmethod
    def _unmount(roots: list[Path], keep: Set[str] = frozenset()) -> None:
        """Every mount under `roots` but those in `keep`, deepest first: overlay
        roots, shm, the kubelet's volume tmpfs, pod netns bind mounts."""
        for point in sorted(set(mount_points()) - keep, key=len, reverse=True):
            if any(point == str(root) or point.startswith(f"{root}/") for root in roots):
                _umount(point)

    @staticmethod
    def _new_netns(before: Set[str]) -> list[str]:
        """Our namespace and the pods' ones the CRI plugin made under /run/netns
        (those not in `before`)."""
        if not NETNS.parent.exists():
            return []
        return sorted(set(os.listdir(NETNS.parent)) - before)

    def _remove_cgroups(self) -> None:
        for hierarchy in CGROUP_ROOT.iterdir():
            top = hierarchy / "kubepods"
            if top.is_dir():
                for cgroup in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [top]:
                    if cgroup.is_dir():
                        _rmdir_when_empty(cgroup)

    def _release_netns(self) -> None:
        """Ours and the pods' namespaces, and /run/netns itself (`ip netns add`
        makes it a mount point) if it was not there before."""
        before = self._netns_before
        if before is None:
            return
        self._unmount([NETNS.parent], keep=self._mounts_before)
        for name in self._new_netns(before):
            (NETNS.parent / name).unlink(missing_ok=True)
        if not before:
            with contextlib.suppress(OSError):
                NETNS.parent.rmdir()
        self._netns_before = None

    def _restore_sysctls(self) -> None:
        for name, value in self._sysctls.items():
            (Path("/proc/sys") / name).write_text(value)


def _remove_pod_files(workdir: Path) -> None:
    """What the CNI DEL and the kubelet's container removal would have deleted
    had the pods been deleted before the node stopped."""
    for result in CNI_CACHE.glob(f"{CNI_NETWORK}-*-eth0"):
        sandbox = result.name.removeprefix(f"{CNI_NETWORK}-").removesuffix("-eth0")
        (CNI_CACHE / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
        result.unlink(missing_ok=True)
    for link in CONTAINER_LOG_LINKS.glob("*.log"):
        if link.is_symlink() and Path(os.readlink(link)).is_relative_to(workdir / "pod-logs"):
            link.unlink()


def _umount(point: str) -> None:
    if ctypes.CDLL(None, use_errno=True).umount2(point.encode(), MNT_DETACH) != 0:
        log.warning("umount %s: %s", point, os.strerror(ctypes.get_errno()))


def _clear_pod_netns(namespaces: set[int]) -> None:
    """A killed node's pod namespaces under /run/netns, known by the namespace
    its pods were in (their names do not say whose they are); then /run/netns
    itself, which `ip netns add` made a mount point, if nothing else is in it."""
    if not NETNS.parent.is_dir():
        return
    for entry in NETNS.parent.iterdir():
        if entry.stat().st_ino in namespaces:
            _umount(str(entry))
            entry.unlink()
    if not any(NETNS.parent.iterdir()) and str(NETNS.parent) in mount_points():
        _umount(str(NETNS.parent))
        NETNS.parent.rmdir()


def _delete_host_link() -> None:
    """The kernel frees an unmounted namespace, and the veth end in it, in the
    background: the host's end can outlive `ip netns delete` long enough for the
    next start's `ip link add` to fail. Deleting it takes both ends at once."""
    if not HOST_LINK.exists():
        return
    result = subprocess.run(["ip", "link", "delete", HOST_IF], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and HOST_LINK.exists():
        raise RuntimeError(f"ip link delete {HOST_IF} failed: {result.stderr.strip()}")


def _remove_node_dirs() -> None:
    """Unmounted already. containerd's root goes too: the next start imports
    the images again rather than trust what a killed run left."""
    for directory in (NODE_DIR, CONTAINERD_RUN_DIR):
        shutil.rmtree(directory, ignore_errors=True)


def _stops_serving(path: Path, timeout: float) -> bool:
    """A SIGKILLed containerd keeps its listening socket, which still accepts
    connections, until its last thread has exited: under load that takes a
    while after its main thread already shows as a zombie."""
    deadline = time.monotonic() + timeout
    while _serving(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _serving(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _rmdir_when_empty(cgroup: Path, timeout: float = 5.0) -> None:
    """A cgroup whose last process was just killed stays busy for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
