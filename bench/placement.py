"""Placement inside one pod: waits while a slot is free, and how many slots a saturated pod keeps busy.

1. Staggered pairs: request A, then B `gap` seconds later (0.05-0.5 s, while A
   runs), each on its own connection, on a pod of several HTTP workers with 2
   slots. B should never wait: a slot is free. Prints how many waited, twice:
   by the queue wait the server reports (from admission in the model
   process's executor), and by the client's round trip less the inference
   time, which also holds any wait in an HTTP worker, on the socket or in a
   reader thread, and the HTTP exchange itself.
2. Saturation: `--clients` closed-loop callers on kept-alive connections
   against `--slots` slots. Prints busy slots on average (the sum of the
   inference time served over the wall time) and requests per second against
   slots / inference time.

    python bench/placement.py [--pairs 100] [--inference 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from localcluster.overload import percentile
from localcluster.servers import ServerProcess


def predict(session: requests.Session, url: str) -> dict:
    response = session.post(url + "/predict", json={"features": [1.0, 2.0]}, timeout=120)
    response.raise_for_status()
    return response.json()


WAITED_SECONDS = 0.01  # more than this with a slot free is a wait


@dataclass(frozen=True)
class Wait:
    """How long a request waited besides its inference, seen from each end."""

    server: float  # queue_seconds: from admission in the model process to a slot
    client: float  # the round trip less the inference: every wait, and the HTTP exchange


def timed_predict(session: requests.Session, url: str) -> Wait:
    started = time.perf_counter()
    answer = predict(session, url)
    return Wait(answer["queue_seconds"], time.perf_counter() - started - answer["inference_seconds"])


def staggered_pairs(url: str, pairs: int) -> list[Wait]:
    waits = []
    with ThreadPoolExecutor(2) as pool:
        for trial in range(pairs):
            gap = 0.05 + 0.45 * (trial % 10) / 9
            first = pool.submit(timed_predict, requests.Session(), url)
            time.sleep(gap)
            second = pool.submit(timed_predict, requests.Session(), url)
            waits += [first.result(), second.result()]
    return waits


def waited(seconds: list[float]) -> str:
    """How many waited, and the waits' spread, in ms."""
    over = sum(1 for wait in seconds if wait > WAITED_SECONDS)
    return (
        f"{over} of {len(seconds)} (p50 {percentile(seconds, 50) * 1000:.2f} ms, "
        f"p99 {percentile(seconds, 99) * 1000:.2f} ms, max {max(seconds) * 1000:.2f} ms)"
    )


def saturation(url: str, clients: int, rounds: int) -> tuple[float, float]:
    """(busy seconds served, wall seconds)."""

    def client(_) -> float:
        session = requests.Session()
        return sum(predict(session, url)["inference_seconds"] for _ in range(rounds))

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        busy = sum(pool.map(client, range(clients)))
    return busy, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--inference", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="HTTP workers")
    parser.add_argument("--slots", type=int, default=8, help="slots for the saturation part")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        env = {
            "INFERENCE_DURATION_SECONDS": str(args.inference),
            "MODEL_CONCURRENCY": "2",
            "MAX_QUEUE": "4",
            "MODEL_LOAD_SECONDS": "0",
            "LOG_LEVEL": "warning",
        }
        (Path(work) / "pairs").mkdir()
        server = ServerProcess(Path(work) / "pairs", env, workers=args.workers).start()
        try:
            waits = staggered_pairs(server.url, args.pairs)
        finally:
            server.stop()
        print(
            f"staggered pairs: {len(waits)} requests, {args.workers} HTTP workers, 2 slots, "
            f"{args.inference:g} s inferences; waited over {WAITED_SECONDS * 1000:g} ms with a slot free:"
        )
        print(f"  by the server's queue wait: {waited([w.server for w in waits])}")
        print(f"  by the client's round trip less the inference: {waited([w.client for w in waits])}")

        env.update(MODEL_CONCURRENCY=str(args.slots), MAX_QUEUE=str(args.clients))
        (Path(work) / "saturation").mkdir()
        server = ServerProcess(Path(work) / "saturation", env, workers=args.workers).start()
        try:
            busy, wall = saturation(server.url, args.clients, args.rounds)
        finally:
            server.stop()
        served = args.clients * args.rounds
        print(f"saturation: {args.clients} clients on {args.slots} slots, {served} requests")
        print(
            f"  busy slots on average {busy / wall:.2f} of {args.slots} "
            f"({busy / wall / args.slots:.1%}); {served / wall:.2f} requests/s against "
            f"slots / inference = {args.slots / args.inference:.2f}"
        )


if __name__ == "__main__":
    main()
