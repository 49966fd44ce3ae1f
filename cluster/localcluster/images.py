"""The images the node runs: the one users build from the Dockerfile, and the
one-binary OCI archives ci/tools.sh packs (their index names only a tag)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from .binaries import image_archive
from .repo import REPO

BUILD_SCRIPT = REPO / "ci" / "build_image.sh"


def app_image() -> Path:
    """The docker archive of `ci/build_image.sh`: built, or reused while the
    Dockerfile and its context are unchanged (cold about 3 minutes, warm 1 s)."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.relative_to(REPO)} failed:\n{result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def oci_image_name(repository: str, archive: Path) -> str:
    """`repository:tag` for an OCI archive whose index holds only the tag, as
    the node imports it (`ctr images import --base-name repository`)."""
    with tarfile.open(archive) as tar:
        index = tar.extractfile("./index.json")
        if index is None:
            raise ValueError(f"{archive}: ./index.json is not a regular file")
        [manifest] = json.load(index)["manifests"]
    return f"{repository}:{manifest['annotations']['org.opencontainers.image.ref.name']}"


def packed_image(repository: str, archive: str) -> str:
    """The reference of an image ci/tools.sh packed into the cache as `archive`,
    which the node imports under `repository`."""
    return oci_image_name(repository, image_archive(archive))
