"""A long overload: `--factor` times the pod's capacity for `--seconds`, minute by minute.

Capacity is MODEL_CONCURRENCY / INFERENCE_DURATION_SECONDS requests per
second; arrivals come on a fixed schedule whatever the answers. Each row is
one interval: answers by status, refusal latency, and the memory, descriptors
and threads of every process of the server. The summary compares the first
interval (after warm-up) with the last.

    python bench/overload.py [--seconds 600] [--factor 10] [--inference 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from localcluster.overload import OpenLoad, ProcessUse, percentile
from localcluster.servers import ServerProcess


def row(label: str, answers: dict[int, list[float]], use: ProcessUse) -> None:
    refused = answers.get(503, [])
    served = answers.get(200, [])
    others = sum(len(v) for status, v in answers.items() if status not in (200, 503))
    refusal = (
        f"{percentile(refused, 50) * 1000:6.1f} {percentile(refused, 99) * 1000:7.1f} {max(refused) * 1000:7.1f}"
        if refused
        else f"{'-':>6} {'-':>7} {'-':>7}"
    )
    print(
        f"{label:>6} {len(served):>6} {len(refused):>7} {others:>6}  {refusal}  "
        f"{sum(use.rss_kib.values()) / 1024:8.1f} {sum(use.fds.values()):5} "
        f"{sum(use.threads.values()):5}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--interval", type=float, default=60, help="seconds per row")
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--factor", type=float, default=10, help="offered load / capacity")
    parser.add_argument("--inference", type=float, default=0.5, help="INFERENCE_DURATION_SECONDS")
    parser.add_argument("--slots", type=int, default=2, help="MODEL_CONCURRENCY")
    parser.add_argument("--queue", type=int, default=8, help="MAX_QUEUE")
    parser.add_argument("--callers", type=int, default=64, help="client threads")
    args = parser.parse_args()
    capacity = args.slots / args.inference
    rate = args.factor * capacity
    env = {
        "INFERENCE_DURATION_SECONDS": str(args.inference),
        "MODEL_CONCURRENCY": str(args.slots),
        "MAX_QUEUE": str(args.queue),
        "MODEL_LOAD_SECONDS": "0",
        "LOG_LEVEL": "warning",
    }
    print(
        f"# capacity {capacity:g}/s, offered {rate:g}/s ({args.factor:g}x) for {args.seconds:g} s, "
        f"{args.slots} slots, queue {args.queue}, {args.inference:g} s inferences, 2 HTTP workers"
    )
    print(
        f"{'t (s)':>6} {'200':>6} {'503':>7} {'other':>6}  {'refusal ms p50   p99    max':<23}  "
        f"{'RSS MiB':>8} {'fds':>5} {'thr':>5}"
    )
    with tempfile.TemporaryDirectory() as work:
        server = ServerProcess(Path(work), env, workers=2).start()
        try:
            rows = measure(server, rate, args)
        finally:
            server.stop()
    summarize(rows)


def measure(server: ServerProcess, rate: float, args) -> list[tuple[dict, ProcessUse]]:
    rows = []
    with OpenLoad(server.url, rate, args.callers) as load:
        time.sleep(args.warmup)
        load.answers.take()
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            time.sleep(args.interval)
            answers, use = load.answers.take(), ProcessUse.of(server)
            row(f"{time.monotonic() - started:.0f}", answers, use)
            rows.append((answers, use))
        if load.backlog > 5:
            print(f"# WARNING: {load.backlog} arrivals were never sent: the client fell behind")
    return rows


def summarize(rows: list[tuple[dict, ProcessUse]]) -> None:
    (_, first), (_, last) = rows[0], rows[-1]
    rss_first, rss_last = sum(first.rss_kib.values()), sum(last.rss_kib.values())
    refused = [seconds for answers, _ in rows for seconds in answers.get(503, [])]
    print(
        f"RSS first -> last interval: {rss_first / 1024:.1f} -> {rss_last / 1024:.1f} MiB "
        f"({(rss_last / rss_first - 1) * 100:+.1f} %)"
    )
    for pid, rss in first.rss_kib.items():
        if pid in last.rss_kib:
            print(f"  {first.names[pid]:<15} RSS {rss / 1024:7.1f} -> {last.rss_kib[pid] / 1024:7.1f} MiB")
    print(
        f"fds {sum(first.fds.values())} -> {sum(last.fds.values())}, "
        f"threads {sum(first.threads.values())} -> {sum(last.threads.values())}, "
        f"processes {len(first.rss_kib)} -> {len(last.rss_kib)}"
    )
    print(
        f"refusals: {len(refused)}, p50 {percentile(refused, 50) * 1000:.1f} ms, "
        f"p99 {percentile(refused, 99) * 1000:.1f} ms, max {max(refused) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
