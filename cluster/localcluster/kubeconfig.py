"""Kubeconfig files for the local cluster's identities."""

from __future__ import annotations

from pathlib import Path

import yaml

CLUSTER_NAME = "localcluster"


def write_kubeconfig(
    path: Path | str,
    server_url: str,
    ca_cert: Path | str,
    client_cert: Path | str,
    client_key: Path | str,
    user_name: str,
) -> Path:
    """A one-context kubeconfig that authenticates with a client certificate.

    Paths are written absolute, not inlined: every consumer here (kubectl,
    client-go components, the Python client, Prometheus) resolves them, and
    the files stay readable with `openssl x509 -in`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server_url, "certificate-authority": str(Path(ca_cert).resolve())},
            }
        ],
        "users": [
            {
                "name": user_name,
                "user": {
                    "client-certificate": str(Path(client_cert).resolve()),
                    "client-key": str(Path(client_key).resolve()),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user_name}}],
        "current-context": CLUSTER_NAME,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
