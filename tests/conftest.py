import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from localcluster.controlplane import ControlPlane
from localcluster.images import app_image
from localcluster.prometheus_process import Prometheus
from localcluster.servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


# ---- markers declare what a test needs ------------------------------------------
# `make test-fast` deselects by them, so a test that starts a cluster, a
# Prometheus or the image without saying so would break it on a machine
# without those: it fails here instead, on every machine.


class UndeclaredNeed(RuntimeError):
    pass


_running: list[pytest.Item] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures, module-scoped ones included, are set up.
    _running[:] = [item]


def require(marker: str) -> None:
    item = _running[0] if _running else None
    if item is not None and item.get_closest_marker(marker) is None:
        raise UndeclaredNeed(f"{item.nodeid} needs @pytest.mark.{marker} (pyproject.toml lists the markers)")


def _declared(start, marker: str):
    @functools.wraps(start)
    def guarded(self, *args, **kwargs):
        require(marker)
        return start(self, *args, **kwargs)

    return guarded


def pytest_configure(config: pytest.Config) -> None:
    ControlPlane.start = _declared(ControlPlane.start, "cluster")
    Prometheus.start = _declared(Prometheus.start, "prometheus")


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
    require("image")
    return app_image()
