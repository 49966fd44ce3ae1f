"""A local Kubernetes cluster for tests and the demo: the real control plane
binaries (controlplane.py) and a real node (containerd, the kubelet and
kube-proxy, node.py) on this machine.

    from localcluster import ControlPlane, RealNode
"""

from .binaries import MissingBinary, bin_dir, binary
from .controlplane import ControlPlane, free_port, wait_until
from .kubeconfig import write_kubeconfig
from .node import NodeBusy, RealNode
from .pki import CertPaths, Pki
from .processes import ManagedProcess, ProcessGroup

__all__ = [
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
