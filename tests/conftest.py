import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from localcluster.images import app_image
from localcluster.servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def start_server(tmp_path):
    """Start real gunicorn servers with given env; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, workers: int = 2, wait_ready: bool = True):
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        server = ServerProcess(workdir, env or {}, workers)
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    for server in started:
        server.stop()


# ---- the rendered Deployment (helm built by ci/tools.sh; missing = failure) -------


def find_helm() -> str:
    env = os.environ.get("HELM")
    if env:
        return env
    cache = Path(os.environ.get("INFERSCALE_CACHE", Path.home() / ".cache" / "inferscale"))
    if os.access(cache / "bin" / "helm", os.X_OK):
        return str(cache / "bin" / "helm")
    found = shutil.which("helm")
    if not found:
        pytest.fail(f"helm not found ($HELM, {cache / 'bin'}, PATH); install it with: bash ci/tools.sh")
    return found


@pytest.fixture(scope="module")
def pod_spec() -> dict:
    result = subprocess.run(
        [find_helm(), "template", "inferscale", str(ROOT / "chart"), "--show-only", "templates/deployment.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod_spec) -> dict:
    return pod_spec["containers"][0]


# ---- the image users build from the Dockerfile (ci/build_image.sh) --------------


@pytest.fixture(scope="session")
def image_archive() -> Path:
    return app_image()
