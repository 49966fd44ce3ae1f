"""Probe and scrape latency while hundreds of connections stall and every model slot is taken.

Half the stalled connections stop inside their headers, half inside their
body; every model slot and queue place holds a long inference. Meanwhile
/health, /ready and /metrics are timed on the admin port (what the chart's
probes and ServiceMonitor use) and on the main port.

    python bench/slow_clients.py [--stalled 300] [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from localcluster.overload import percentile
from localcluster.servers import ServerProcess, scrape
from localcluster.stalls import STALLED_BODY, STALLED_HEADERS, open_stalled

PATHS = ("/health", "/ready", "/metrics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stalled", type=int, default=300, help="stalled connections")
    parser.add_argument("--seconds", type=float, default=20, help="sampling time")
    args = parser.parse_args()
    env = {
        "INFERENCE_DURATION_SECONDS": str(args.seconds + 30),
        # Every slot held through the sampling by design, not stuck: no time limit.
        "INFERENCE_TIMEOUT_SECONDS": "0",
        "MODEL_CONCURRENCY": "2",
        "MAX_QUEUE": "4",
        "MODEL_LOAD_SECONDS": "0",
        # Longer than the sampling: every stall lasts the whole measurement.
        "REQUEST_TIMEOUT_SECONDS": str(args.seconds + 10),
        "LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryDirectory() as work:
        server = ServerProcess(Path(work), env, workers=2).start()
        try:
            measure(server, args)
        finally:
            server.stop()


def measure(server: ServerProcess, args) -> None:
    with ThreadPoolExecutor(6) as pool:
        for _ in range(6):  # 2 slots + 4 queue places, each held for the whole run
            pool.submit(server.predict, timeout=args.seconds + 60)
        half = args.stalled // 2
        stalled = [open_stalled(server.port, STALLED_HEADERS) for _ in range(half)]
        stalled += [open_stalled(server.port, STALLED_BODY) for _ in range(args.stalled - half)]
        time.sleep(1)
        samples = scrape(server.admin_url)
        print(
            f"# {args.stalled} stalled connections (counted: "
            f"{samples['inference_http_receiving_connections']:.0f}), "
            f"{samples['inference_in_flight_requests']:.0f} inferences running, "
            f"{samples['inference_queue_depth']:.0f} queued; {args.seconds:g} s of sampling"
        )
        latencies = sample(server, args.seconds)
        for sock in stalled:
            sock.close()
        print(f"{'port':<6} {'path':<9} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for (port, path), values in latencies.items():
            print(
                f"{port:<6} {path:<9} {len(values):>5} {percentile(values, 50) * 1000:8.1f} "
                f"{percentile(values, 99) * 1000:8.1f} {max(values) * 1000:8.1f}"
            )
        server.stop(timeout=5)


def sample(server: ServerProcess, seconds: float) -> dict[tuple[str, str], list[float]]:
    latencies: dict[tuple[str, str], list[float]] = {}
    session = requests.Session()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for port, url in (("admin", server.admin_url), ("main", server.url)):
            for path in PATHS:
                started = time.perf_counter()
                session.get(url + path, timeout=30).raise_for_status()
                latencies.setdefault((port, path), []).append(time.perf_counter() - started)
        time.sleep(0.05)
    return latencies


if __name__ == "__main__":
    main()
