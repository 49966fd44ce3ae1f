"""kubectl against the local API server, for what a user would type: applying
manifests, `rollout status`, `scale`. The same tool a user runs, so what works
here works there; the one ci/build_k8s.sh builds at the cluster's version, not
whatever the machine has. The harness's reads go through `ControlPlane.api` instead."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from localcluster.binaries import binary


class KubectlError(RuntimeError):
    pass


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    result = subprocess.run(
        [binary("kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def apply(kubeconfig: Path, objects: list[dict[str, Any]]) -> str:
    """Server-side apply, as `kubectl apply --server-side`; kubectl's line for each object."""
    return kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
