"""Scrapes under saturation against the request path's nice level: why the server runs it 10 levels down.

The same measurement as bench/vs_kserve.py (wrk on V2 infer at 0 s inference,
a real Prometheus scraping the admin port every 100 ms and timing each
scrape), on inferscale alone, with its HTTP workers and model process reniced
after start to each level of `--niceness` (the server itself starts them at
supervisor.REQUEST_PATH_NICENESS). Every thread of those processes is
reniced, since Linux keeps a nice value per thread. The levels take turns in
each round, in an order rotated every round, since this machine's speed
drifts from minute to minute. Prints each run, then per level the rounds
whose slowest scrape passed SLOW_SCRAPE_MS, as Prometheus timed it and (as
root, with tcpdump) the server's part of it on the wire; exits non-zero on
errors, never on a figure. Raising a priority (a level below the shipped
one) needs root.

    python bench/scrape_priority.py [--rounds 5] [--niceness 0,5,10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

from vs_kserve import WRK_SCRIPT, Result, Server, exit_status, inferscale_server, measure, print_ratios, print_table

from inferscale.supervisor import REQUEST_PATH_NICENESS
from localcluster.servers import process_name

REQUEST_PATH = ("http-worker", "model-process")
SLOW_SCRAPE_MS = 10.0


@dataclass
class RenicedServer(Server):
    """inferscale, its request path at `niceness` levels below the rest once it is up."""

    niceness: int = REQUEST_PATH_NICENESS

    def start(self) -> None:
        super().start()
        base = os.getpriority(os.PRIO_PROCESS, self.process.pid)
        for pid in self.pids:
            if process_name(pid) in REQUEST_PATH:
                for task in os.listdir(f"/proc/{pid}/task"):
                    os.setpriority(os.PRIO_PROCESS, int(task), base + self.niceness)


def reniced(server: Server, niceness: int) -> RenicedServer:
    own = {field.name: getattr(server, field.name) for field in fields(Server)}
    return RenicedServer(**{**own, "name": label(niceness)}, niceness=niceness)


def label(niceness: int) -> str:
    shipped = " (shipped)" if niceness == REQUEST_PATH_NICENESS else ""
    return f"nice {niceness}{shipped}"


def print_slow_rounds(results: list[Result], levels: list[int]) -> None:
    timings = {"as Prometheus timed it": "scrape_ms", "the server's part, on the wire": "server_scrape_ms"}
    for timing, attribute in timings.items():
        print(
            f"\nrounds whose slowest scrape took over {SLOW_SCRAPE_MS:g} ms, {timing}, per level"
            " (each round's maximum):"
        )
        for niceness in levels:
            maxima = [
                max(getattr(r, attribute)) for r in results if r.name == label(niceness) and getattr(r, attribute)
            ]
            if not maxima:
                print(f"  {label(niceness):<18}not measured")
                continue
            slow = sum(1 for maximum in maxima if maximum > SLOW_SCRAPE_MS)
            print(
                f"  {label(niceness):<18}{slow} of {len(maxima)}   "
                + " ".join(f"{maximum:.1f}" for maximum in maxima)
                + f"   median {statistics.median(maxima):.1f} ms"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="turns each level takes")
    parser.add_argument(
        "--niceness",
        default=f"0,5,{REQUEST_PATH_NICENESS}",
        help="nice levels of the request path to compare, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=20, help="measured wrk run per level")
    parser.add_argument("--warmup", type=float, default=3, help="wrk run before it, not measured")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    args = parser.parse_args()
    levels = [int(level) for level in args.niceness.split(",")]

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="scrape-priority-") as tmp:
        script = Path(tmp) / "v2_infer.lua"
        script.write_text(WRK_SCRIPT)
        print(f"# {args.rounds} rounds of wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s", flush=True)
        for round_number in range(1, args.rounds + 1):
            turn = (round_number - 1) % len(levels)
            for niceness in levels[turn:] + levels[:turn]:
                work = Path(tmp) / f"round-{round_number}-nice-{niceness}"
                work.mkdir()
                server = reniced(inferscale_server(work), niceness)
                results.append(measure(server, round_number, work, script, args))
                print(f"# round {round_number}: {server.name}, load average {os.getloadavg()[0]:.2f}", flush=True)

    print_table(results)
    for niceness in levels:
        if niceness != REQUEST_PATH_NICENESS:
            print_ratios(results, label(REQUEST_PATH_NICENESS), label(niceness))
    print_slow_rounds(results, levels)
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())
