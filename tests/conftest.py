import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers import ServerProcess  # noqa: E402


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
