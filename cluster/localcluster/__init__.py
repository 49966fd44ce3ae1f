"""The project's harness, installed into the dev venv (cluster/pyproject.toml):
a local Kubernetes cluster for the tests, the benchmarks and the demo (the
real control plane binaries, controlplane.py, and a real node with
containerd, the kubelet and kube-proxy, node.py), and the local processes
they drive: servers (servers.py), load (load.py, overload.py) and hostile
clients (stalls.py).

    from localcluster import ControlPlane, RealNode
"""

from .binaries import MissingBinary, bin_dir, binary
from .controlplane import ControlPlane
from .kubeconfig import write_kubeconfig
from .loopback import LOOPBACK, free_port
from .node import NodeBusy, RealNode
from .pki import CertPaths, Pki
from .processes import ManagedProcess, ProcessGroup, wait_until

__all__ = [
    "LOOPBACK",
    "CertPaths",
    "ControlPlane",
    "ManagedProcess",
    "MissingBinary",
    "NodeBusy",
    "Pki",
    "ProcessGroup",
    "RealNode",
    "bin_dir",
    "binary",
    "free_port",
    "wait_until",
    "write_kubeconfig",
]
