"""Real server processes for tests and benchmarks: free loopback ports,
readiness waits, and the teardown of a ManagedProcess (nothing outlives the
test, even when pytest itself is killed)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from .loopback import LOOPBACK, free_port
from .processes import ManagedProcess, wait_until

# Fast enough for tests, slow enough that "while a slot is busy" is observable.
TEST_ENV = {
    "MODEL_LOAD_SECONDS": "0.2",
    "MODEL_MEMORY_MB": "8",
    "INFERENCE_DURATION_SECONDS": "0.2",
    "LOG_LEVEL": "warning",
}


class ServerProcess:
    """`inferscale serve` on free loopback ports, with its own metrics directory.

    `command(port)` runs another server instead (a benchmark's baseline); it must
    bind `port` and serve /health, /ready and /metrics there.
    """

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        workers: int = 2,
        command: Callable[[int], list[str]] | None = None,
    ):
        self.port = free_port()
        self.admin_port = free_port() if command is None else self.port
        self.url = f"http://{LOOPBACK}:{self.port}"
        # Probes and scrapes: the admin port, as the chart's probes and ServiceMonitor use it.
        self.admin_url = f"http://{LOOPBACK}:{self.admin_port}"
        self.multiproc_dir = workdir / "metrics"
        self.log_path = workdir / "server.log"
        self.env = {
            **os.environ,
            **TEST_ENV,
            **env,
            "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc_dir),
        }
        self.workers = workers
        self.command = (
            command(self.port)
            if command
            else [
                sys.executable,
                "-m",
                "inferscale.cli",
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--admin-port",
                str(self.admin_port),
                "--workers",
                str(workers),
            ]
        )
        self.process = ManagedProcess("server", self.command, self.log_path, env=self.env, stop_timeout=30.0)

    def start(self, wait_ready: bool = True) -> ServerProcess:
        self.started_at = time.monotonic()
        self.process.start()
        self.wait_for("/health")
        if wait_ready:
            self.wait_for("/ready")
        return self

    def wait_for(self, path: str, timeout: float = 30.0) -> None:
        # A server still booting may accept and then drop the connection: only a 200 counts.
        wait_until(
            lambda: requests.get(self.admin_url + path, timeout=1).status_code == 200,
            f"{path} == 200",
            timeout,
            process=self.process,
            interval=0.05,
        )

    def processes(self, name: str) -> list[int]:
        """Pids of the server's processes named `name`: model-process, gunicorn or http-worker."""
        server_pid = self.process.pid
        if server_pid is None:  # never started: it has none
            return []
        return [pid for pid in descendants(server_pid) if process_name(pid) == name]

    def model_pid(self) -> int:
        [pid] = self.processes("model-process")
        return pid

    def worker_pids(self) -> list[int]:
        return self.processes("http-worker")

    def terminate(self) -> None:
        """SIGTERM only, as the kubelet sends it; the test watches what follows."""
        self.process.signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        return self.process.stop(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def predict(self, features=(1.0, 2.0, 3.0), timeout: float = 60.0) -> requests.Response:
        return requests.post(self.url + "/predict", json={"features": list(features)}, timeout=timeout)


def process_tree(pid: int | None) -> list[int]:
    """`pid` and every process below it; none for a process never started."""
    return [] if pid is None else [pid, *descendants(pid)]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, at any depth."""
    return [grandchild for child in children(pid) for grandchild in [child, *descendants(child)]]


def children(pid: int) -> list[int]:
    """The children of `pid`, forked by any of its threads: /proc lists them per thread."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:  # exited
        return found
    for task in tasks:
        try:
            found.extend(map(int, (task / "children").read_text().split()))
        except FileNotFoundError:  # that thread exited
            continue
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def scrape(url: str) -> dict[str, float]:
    """Samples of a /metrics page keyed like `name{label="value"}` (labels sorted)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(url + "/metrics", timeout=10)
    response.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds, as /proc/net/tcp names them."""
    targets = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.is_symlink())
    return {target[8:-1] for target in targets if target.startswith("socket:[")}


def client_connections(pid: int, port: int) -> int:
    """Established TCP connections to `port` held by process `pid`."""
    inodes = socket_inodes(pid)
    established = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            established += 1
    return established
