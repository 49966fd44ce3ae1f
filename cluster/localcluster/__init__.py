"""A local Kubernetes cluster for tests and the demo: the real control plane
binaries, and a node agent that runs pods as local processes on loopback, or
a real node (containerd and the kubelet, node.py).

    from localcluster import ControlPlane, NodeAgent, RealNode
"""

from .binaries import MissingBinary, bin_dir, binary
from .controlplane import ControlPlane, free_port, wait_until
from .kubeconfig import write_kubeconfig
from .node import NodeBusy, RealNode
from .pki import CertPaths, Pki
from .processes import ManagedProcess, ProcessGroup
from .service_proxy import ProxySpec, ServiceProxy


def __getattr__(name: str):
    # Imported on first use: node_agent pulls in the kubernetes client (slow to
    # import), and importing it here would make `python -m localcluster.node_agent`
    # load the module twice.
    if name in ("NodeAgent", "agent_process"):
        from . import node_agent

        return getattr(node_agent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CertPaths", "ControlPlane", "ManagedProcess", "MissingBinary", "NodeAgent", "NodeBusy", "Pki", "ProcessGroup",
    "ProxySpec", "RealNode", "ServiceProxy", "agent_process", "bin_dir", "binary", "free_port", "wait_until",
    "write_kubeconfig",
]
