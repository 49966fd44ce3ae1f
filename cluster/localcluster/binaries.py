"""Where the pinned Kubernetes, etcd and adapter binaries live.

`bash ci/tools.sh` builds them once into `$INFERSCALE_CACHE/bin`
(default `~/.cache/inferscale/bin`). Nothing here falls back to `$PATH`: a
distribution's etcd or kube-apiserver is a different version from the pinned
one (Debian's etcd 3.4 is below what Kubernetes 1.33 supports), and a test
that silently ran against it would prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


class MissingBinary(FileNotFoundError):
    """A pinned tool has not been built yet."""


def cache_dir() -> Path:
    return Path(os.environ.get("INFERSCALE_CACHE") or Path.home() / ".cache" / "inferscale")


def bin_dir() -> Path:
    return cache_dir() / "bin"


def binary(name: str) -> str:
    """Absolute path of a pinned tool, or a MissingBinary saying how to build it."""
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinary(f"{name} is not in {bin_dir()}: run `bash ci/tools.sh` to build the pinned tools")
    return str(path)


def image_archive(filename: str) -> Path:
    """An image archive `ci/tools.sh node` packed (the pause image, CoreDNS)."""
    path = cache_dir() / "images" / filename
    if not path.is_file():
        raise MissingBinary(f"{path} is missing: run `bash ci/tools.sh node` to build it")
    return path
