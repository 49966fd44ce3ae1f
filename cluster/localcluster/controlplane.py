"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager (with the real HPA controller) and kube-scheduler.

Every component is the pinned upstream binary (see binaries.py) with
generated certificates (pki.py); each listens on a free port of 127.0.0.1.
Choices that differ from a production cluster, and why:

- The API server listens on 127.0.0.1 only. With a real node, pods reach it
  as in any cluster, through the `kubernetes` Service: it advertises the
  host's address on the node's link (`advertise_address`), where the node
  relays connections to loopback (node.py). Without one it advertises
  nothing (`--endpoint-reconciler-type=none`): Endpoints refuse 127.0.0.1.
- Controllers that need a cloud provider or node CIDRs are left to skip
  themselves, which they do when those flags are absent.
- etcd runs with `--unsafe-no-fsync`: the cluster is thrown away with its
  workdir, and fsync on a shared CI disk costs seconds per write burst.
- No leader election: there is one of each.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from inferscale.doctor.kube import Cluster

from .binaries import binary
from .kubeconfig import write_kubeconfig
from .kubectl import apply
from .loopback import LOOPBACK, free_port
from .pki import Pki
from .processes import ManagedProcess, ProcessGroup, undone_on_failure, wait_until

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
# The first address of the service range: the `kubernetes` Service's ClusterIP,
# which belongs in the API server's certificate like kubeadm puts it there.
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT = 120.0
# The API server's identity toward kubelets (logs, exec, port-forward), as kubeadm names it.
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
# A tolerance per HPA and direction (behavior.scaleUp/scaleDown.tolerance) is
# alpha in v1.33 and on by default from v1.35: on here, so that this cluster
# keeps and acts on the field as the clusters users run now do. The API
# server drops the field with the gate off; the controller then ignores it.
FEATURE_GATES = "--feature-gates=HPAConfigurableTolerance=true"


class ControlPlane:
    """Context manager: `with ControlPlane(tmp) as cp: kubectl --kubeconfig cp.admin_kubeconfig ...`."""

    def __init__(
        self,
        workdir: Path | str,
        hpa_sync_period: str = "5s",
        extra_controller_manager_args=(),
        extra_apiserver_args=(),
        advertise_address: str | None = None,
    ):
        self.workdir = Path(workdir)
        self.hpa_sync_period = hpa_sync_period
        self.extra_controller_manager_args = tuple(extra_controller_manager_args)
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.advertise_address = advertise_address
        self._pki: Pki | None = None
        self.api_url = ""
        self.etcd_url = ""
        self._admin_kubeconfig: Path | None = None
        self.start_seconds: float | None = None
        self._group = ProcessGroup()

    @property
    def processes(self) -> list[ManagedProcess]:
        return list(self._group.processes)

    @property
    def pki(self) -> Pki:
        """The cluster's CAs and certificates, made by `start()`."""
        if self._pki is None:
            raise RuntimeError("control plane not started: it has no PKI yet")
        return self._pki

    @property
    def admin_kubeconfig(self) -> Path:
        """A kubeconfig of a `system:masters` user, written by `start()`."""
        if self._admin_kubeconfig is None:
            raise RuntimeError("control plane not started: it has no admin kubeconfig yet")
        return self._admin_kubeconfig

    @functools.cached_property
    def api(self) -> Cluster:
        """The harness's one client for its reads of the API server, as the
        admin: the kubernetes library's, which `inferscale doctor` uses too."""
        return Cluster.from_kubeconfig(str(self.admin_kubeconfig))

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with undone_on_failure(self.stop):
            self._pki = Pki.create(self.workdir / "pki")
            self._start_etcd()
            self.api_url = f"https://{LOOPBACK}:{free_port()}"
            self._admin_kubeconfig = self.kubeconfig_for("admin", ["system:masters"])
            self._start_apiserver()
            controller_manager = self._start_controller_manager()
            scheduler = self._start_scheduler()
            for process, port in (controller_manager, scheduler):
                self._wait_healthy(process, f"https://{LOOPBACK}:{port}/healthz")
        self.start_seconds = time.monotonic() - started
        log.info("control plane at %s up in %.1f s", self.api_url, self.start_seconds)
        return self

    def stop(self) -> None:
        """Stop every component, newest first; nothing is left running."""
        self._group.stop()

    def kubeconfig_for(self, user: str, groups=()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` (client certificate: CN=user, O=groups)."""
        name = user.replace(":", "-")
        cert = self.pki.issue(f"client-{name}", user, organizations=tuple(groups), client=True)
        return write_kubeconfig(
            self.workdir / "kubeconfigs" / f"{name}.kubeconfig",
            self.api_url,
            self.pki.ca_cert,
            cert.cert,
            cert.key,
            user,
        )

    def node_kubeconfig(self, node_name: str) -> Path:
        """The identity a kubelet has: the Node authorizer limits it to its own node and pods."""
        return self.kubeconfig_for(f"system:node:{node_name}", ["system:nodes"])

    # --- components ---------------------------------------------------------

    def _start(self, name: str, argv: list[str], stop_timeout: float = 10.0) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log", stop_timeout=stop_timeout)
        return self._group.start(process)

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://{LOOPBACK}:{client_port}"
        peer_url = f"http://{LOOPBACK}:{peer_port}"
        etcd = self._start(
            "etcd",
            [
                binary("etcd"),
                "--name=localcluster",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=localcluster={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_until(
            lambda: requests.get(f"{self.etcd_url}/health", timeout=1).json().get("health") == "true",
            "etcd /health",
            START_TIMEOUT,
            etcd,
        )

    def _start_apiserver(self) -> None:
        port = int(self.api_url.rsplit(":", 1)[1])
        pki = self.pki
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=(LOOPBACK, KUBERNETES_SERVICE_IP, *filter(None, [self.advertise_address])),
        )
        front_proxy = pki.issue("front-proxy-client", "front-proxy-client", client=True, ca="front-proxy")
        kubelet_client = pki.issue("apiserver-kubelet-client", KUBELET_CLIENT_USER, client=True)
        apiserver = self._start(
            "kube-apiserver",
            [
                binary("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                *(
                    [f"--advertise-address={self.advertise_address}", "--endpoint-reconciler-type=lease"]
                    if self.advertise_address
                    else [f"--advertise-address={LOOPBACK}", "--endpoint-reconciler-type=none"]
                ),
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # With the Node authorizer, as kubeadm runs it: a kubelet may change
                # only its own Node and pods, and not labels that steer workloads.
                "--enable-admission-plugins=NodeRestriction",
                f"--client-ca-file={pki.ca_cert}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={front_proxy.cert}",
                f"--proxy-client-key-file={front_proxy.key}",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                # A node's Hostname address names no DNS entry here; its InternalIP is reachable.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--profiling=false",
                FEATURE_GATES,
                *self.extra_apiserver_args,
            ],
            stop_timeout=15.0,
        )
        self._wait_apiserver_ready(apiserver)
        self._allow_kubelet_api()

    @contextlib.contextmanager
    def apiserver_stopped(self) -> Iterator[None]:
        """The API server stopped for the block, then started again on the same
        port and etcd, as an upgrade or a crash does; ready when the block exits."""
        apiserver = next(p for p in self._group.processes if p.name == "kube-apiserver")
        apiserver.stop()
        try:
            yield
        finally:
            apiserver.start()
            self._wait_apiserver_ready(apiserver)

    def _admin_cert(self) -> tuple[str, str]:
        return str(self.pki.directory / "client-admin.crt"), str(self.pki.directory / "client-admin.key")

    def _wait_apiserver_ready(self, apiserver: ManagedProcess) -> None:
        # /readyz is 200 only once the RBAC bootstrap roles and system namespaces exist.
        wait_until(
            lambda: requests.get(
                f"{self.api_url}/readyz",
                cert=self._admin_cert(),
                verify=str(self.pki.ca_cert),
                timeout=2,
            ).status_code
            == 200,
            "kube-apiserver /readyz",
            START_TIMEOUT,
            apiserver,
            interval=0.25,
        )

    def _allow_kubelet_api(self) -> None:
        """A kubelet asks the API server (webhook authorization) whether our
        client may use its API; kubeadm binds the same role."""
        binding: dict[str, Any] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": KUBELET_CLIENT_USER},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBELET_CLIENT_USER}],
        }
        apply(self.admin_kubeconfig, [binding])

    def _component_args(self, name: str, user: str) -> tuple[list[str], int]:
        """Flags every client-go component shares: its identity, and a serving
        certificate from our CA so that /healthz can be checked with verification on."""
        kubeconfig = self.kubeconfig_for(user)
        serving = self.pki.issue(
            f"{name}-serving", name, server=True, dns_names=("localhost",), ip_addresses=(LOOPBACK,)
        )
        port = free_port()
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            "--leader-elect=false",
        ], port

    def _start_controller_manager(self) -> tuple[ManagedProcess, int]:
        args, port = self._component_args("kube-controller-manager", "system:kube-controller-manager")
        process = self._start(
            "kube-controller-manager",
            [
                binary("kube-controller-manager"),
                *args,
                f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period}",
                # Each controller acts with its own service account, as in kubeadm clusters,
                # so RBAC is exercised as it would be.
                "--use-service-account-credentials=true",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--cluster-signing-cert-file={self.pki.ca_cert}",
                f"--cluster-signing-key-file={self.pki.ca_key}",
                # The not-ready taint a new Node is born with goes at the first check
                # after it reports Ready; 1 s instead of 5 s shortens every start.
                "--node-monitor-period=1s",
                FEATURE_GATES,
                *self.extra_controller_manager_args,
            ],
        )
        return process, port

    def _start_scheduler(self) -> tuple[ManagedProcess, int]:
        args, port = self._component_args("kube-scheduler", "system:kube-scheduler")
        return self._start("kube-scheduler", [binary("kube-scheduler"), *args]), port

    def _wait_healthy(self, process: ManagedProcess, url: str) -> None:
        wait_until(
            lambda: requests.get(url, verify=str(self.pki.ca_cert), timeout=2).status_code == 200,
            f"{process.name} /healthz",
            START_TIMEOUT,
            process,
        )
