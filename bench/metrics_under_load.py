"""/metrics latency while every model slot is busy: inferscale against a naive server.

Both run the same model (INFERENCE_DURATION_SECONDS each, one slot)
under the same closed-loop load of `--clients` concurrent /predict callers.
The naive baseline calls the model inline in one synchronous gunicorn worker.

    python bench/metrics_under_load.py [--seconds 30] [--clients 8] [--inference 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from localcluster.servers import LOOPBACK, ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def naive_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "sync",
        "--workers",
        "1",
        "--bind",
        f"{LOOPBACK}:{port}",
        "--chdir",
        str(ROOT / "bench"),
        "--timeout",
        "600",
        "--no-control-socket",
        "naive_app:create_app()",
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(server: ServerProcess, seconds: float, clients: int) -> list[float]:
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                server.predict(timeout=120)
            except requests.RequestException:
                pass

    workers = [threading.Thread(target=load, daemon=True) for _ in range(clients)]
    for worker in workers:
        worker.start()
    time.sleep(2)  # let the queue fill before sampling
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        requests.get(server.admin_url + "/metrics", timeout=300).raise_for_status()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    stop.set()
    return latencies


# Fewer samples than this have no 99th percentile of their own: the nearest rank is the maximum.
P99_SAMPLES = 100


def tail_name(samples: int) -> str:
    return "p99" if samples >= P99_SAMPLES else "max"


def report(result: dict) -> None:
    print(
        f"{result['server']:<11} n={result['samples']:<4} "
        f"p50={result['p50'] * 1000:9.1f} ms  {tail_name(result['samples'])}={result['tail'] * 1000:9.1f} ms",
        flush=True,
    )


def run(label: str, server: ServerProcess, seconds: float, clients: int) -> dict:
    """The server's /metrics latencies while `clients` keep every slot and queue place taken."""
    server.start()
    try:
        latencies = measure(server, seconds, clients)
    finally:
        server.stop(timeout=10)
    return {
        "server": label,
        "samples": len(latencies),
        "p50": statistics.median(latencies),
        "tail": percentile(latencies, 99) if len(latencies) >= P99_SAMPLES else max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="sampling time per server")
    parser.add_argument("--clients", type=int, default=8, help="concurrent /predict callers")
    parser.add_argument("--inference", type=float, default=1.0, help="INFERENCE_DURATION_SECONDS")
    args = parser.parse_args()
    env = {
        "INFERENCE_DURATION_SECONDS": str(args.inference),
        "MODEL_CONCURRENCY": "1",
        "MAX_QUEUE": "4",
        "MODEL_LOAD_SECONDS": "0",
    }
    print(f"# {args.clients} clients, {args.inference} s inference, {args.seconds} s of /metrics sampling per server")
    with tempfile.TemporaryDirectory() as work:
        ours_dir, naive_dir = Path(work, "inferscale"), Path(work, "naive")
        ours_dir.mkdir()
        naive_dir.mkdir()
        ours = run("inferscale", ServerProcess(ours_dir, env, workers=2), args.seconds, args.clients)
        report(ours)
        naive_server = ServerProcess(naive_dir, env, workers=1, command=naive_command)
        naive_server.env.pop("PROMETHEUS_MULTIPROC_DIR")  # one process: plain in-memory metrics
        naive = run("naive", naive_server, args.seconds, args.clients)
        report(naive)
    tails = f"{tail_name(naive['samples'])} / {tail_name(ours['samples'])}"
    print(f"ratio naive/inferscale: p50 x{naive['p50'] / ours['p50']:.0f}, {tails} x{naive['tail'] / ours['tail']:.0f}")


if __name__ == "__main__":
    main()
