"""How fast the real loop reacts: a load step against the local control plane.

For each configuration (the chart's defaults, and the seeds' 240 s scale-up /
300 s scale-down stabilization) this brings up the whole stack
(localcluster), steps the load from nothing to `--users` locust users, and
prints, in seconds from the step: the HPA's first scale-up decision, the first
added pod Ready, the peak replica count and when it was reached, when the
per-pod average came back under the target, and over the steady last part of
the load the median replica count and how often it changed. Then it prints
the reaction-time budget (scrape interval + rate window + HPA sync + pod
readiness) to compare the measurements against.

The pods request 100m CPU instead of the chart's 250m (`--cpu-request`): they
sleep through their inferences, and this 2-core node has room for 6 pods at
250m, fewer than a 5x step asks for; the loop, not the node, is measured.

    python bench/autoscale.py                 # both configurations, chart timing (~35 min)
    python bench/autoscale.py --fast          # FAST_LOOP timing, for a quick look (~10 min)
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from inferscale.simulation.chart_values import seconds
from localcluster.hpa import HpaRecorder, sample
from localcluster.load import headless_locust
from localcluster.repo import ARRIVAL_LOG_PLUGIN
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig, merged

ROOT = Path(__file__).resolve().parent.parent

SEEDS_BEHAVIOR = {
    "autoscaling": {
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 240},
            "scaleDown": {"stabilizationWindowSeconds": 300},
        }
    }
}


@dataclass
class Timing:
    scrape: float
    window: float
    relist: float
    sync: float
    readiness: float

    @property
    def budget(self) -> float:
        # The relist is not in it: the adapter queries new pods by name at each
        # HPA request; only a metric name it has never listed waits for one.
        return self.scrape + self.window + self.sync + self.readiness


def timing_of(fast: bool, chart: dict) -> Timing:
    """The stack's timing as installed: FAST_LOOP's, or the installed chart
    values' and adapter-values.yaml's; readiness is the model load and two
    startup-probe periods."""
    readiness = chart["server"]["modelLoadSeconds"] + 2 * chart["probes"]["startup"]["periodSeconds"]
    if fast:
        return Timing(
            seconds(FAST_LOOP["scrape_interval"]),
            seconds(FAST_LOOP["rate_window"]),
            seconds(FAST_LOOP["relist_interval"]),
            seconds(FAST_LOOP["hpa_sync_period"]),
            readiness,
        )
    adapter = yaml.safe_load((ROOT / "adapter-values.yaml").read_text())
    return Timing(
        seconds(chart["serviceMonitor"]["interval"]),
        seconds(chart["autoscaling"]["rateWindow"]),
        seconds(adapter["metricsRelistInterval"]),
        seconds(StackConfig.hpa_sync_period),
        readiness,
    )


def wait_for_metric(stack: LocalStack, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while sample(stack.hpa(), 0).metric is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the HPA never read its metric")
        time.sleep(2)


def offer_load(
    stack: LocalStack, users: int, user_rps: float, seconds: float, arrival_log: Path | None = None
) -> subprocess.CompletedProcess:
    """`users` locust users, all started within a second, for `seconds`; locust's summary is in its output.
    With `arrival_log`, the wall-clock start of every request sent is appended to that file."""
    plugins, env = (), {**os.environ, "LOAD_USER_RPS": str(user_rps)}
    if arrival_log is not None:
        plugins, env["ARRIVAL_LOG"] = (ARRIVAL_LOG_PLUGIN,), str(arrival_log)
    return subprocess.run(
        headless_locust(stack.service_url, users, seconds, "--only-summary", plugins=plugins),
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
    )


def measure(
    label: str,
    config: StackConfig,
    users: int,
    user_rps: float,
    load_seconds: float,
    steady_seconds: float,
    target: float,
) -> dict:
    with LocalStack(config) as stack:
        wait_for_metric(stack)
        recorder = HpaRecorder(stack.hpa, period=1.0)
        recorder.start()
        locust = offer_load(stack, users, user_rps, load_seconds)
        samples = recorder.stop()
    return summarize(label, samples, load_seconds, steady_seconds, target, locust)


def first(samples, condition) -> float | None:
    return next((s.at for s in samples if condition(s)), None)


def summarize(label, samples, load_seconds, steady_seconds, target, locust) -> dict:
    scaled = first(samples, lambda s: s.replicas > 1)
    peak = max(s.replicas for s in samples)
    # Without a scale-up there is no peak to reach or recover from.
    reached = first(samples, lambda s: s.replicas == peak) if scaled is not None else None
    steady = [s.replicas for s in samples if s.at >= load_seconds - steady_seconds]
    aggregated = next(
        (
            line.split()
            for line in locust.stdout.splitlines() + locust.stderr.splitlines()
            if line.strip().startswith("Aggregated")
        ),
        ["", "?", "?"],
    )
    return {
        "config": label,
        "first scale-up decision": first(samples, lambda s: s.desired > 1),
        "replicas first above 1": scaled,
        "peak replicas": peak,
        "peak reached": reached,
        "steady replicas (median)": f"{statistics.median(steady):g}",
        "latency back under target": first(
            samples, lambda s: reached is not None and s.at >= reached and s.metric is not None and s.metric < target
        ),
        "replica changes in steady period": sum(1 for a, b in itertools.pairwise(steady) if a != b),
        # locust's summary row: "Aggregated <requests> <failures>(<percent>)".
        "requests (failed)": f"{aggregated[1]} ({aggregated[2]})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="FAST_LOOP timing instead of the chart's")
    parser.add_argument("--users", type=int, default=None, help="locust users after the step")
    parser.add_argument("--load-seconds", type=float, default=None)
    parser.add_argument("--cpu-request", default="100m", help="the pods' CPU request (the chart's: 250m)")
    args = parser.parse_args()
    base = dict(FAST_LOOP) if args.fast else {}
    chart_values = merged(base.pop("chart_values", {}), {"resources": {"requests": {"cpu": args.cpu_request}}})
    installed = merged(yaml.safe_load((ROOT / "chart" / "values.yaml").read_text()), chart_values)
    timing = timing_of(args.fast, installed)
    target = installed["autoscaling"]["targetAverageDurationSeconds"]
    # Offered load = 5 pods' worth: one pod serves workers x slots / inference seconds.
    user_rps = 0.5 if args.fast else 0.2
    users = args.users or 5
    load_seconds = args.load_seconds or (240 if args.fast else 720)
    steady_seconds = load_seconds / 4
    results = []
    for label, extra in (("chart defaults", {}), ("seeds 240s up / 300s down", SEEDS_BEHAVIOR)):
        with tempfile.TemporaryDirectory() as work:
            config = StackConfig(
                workdir=Path(work),
                chart_values=merged(chart_values, extra),
                **base,
            )
            result = measure(label, config, users, user_rps, load_seconds, steady_seconds, target)
        results.append(result)
        print(result, flush=True)
    print(
        f"\n# load step: 0 -> {users} users x {user_rps} req/s for {load_seconds:.0f} s; "
        f"target {target} s; steady period = last {steady_seconds:.0f} s"
    )
    keys = [k for k in results[0] if k != "config"]
    print(f"{'':36}" + "".join(f"{r['config']:>30}" for r in results))
    for key in keys:
        print(f"{key:36}" + "".join(f"{fmt(r[key]):>30}" for r in results))
    print(
        f"\n# reaction budget: scrape {timing.scrape:.0f} + rate window {timing.window:.0f} + "
        f"HPA sync {timing.sync:.0f} + readiness {timing.readiness:.0f} = {timing.budget:.0f} s "
        f"(plus any scale-up stabilization window; plus the {timing.relist:.0f} s relist once after an install)"
    )


def fmt(value) -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.0f} s"
    return str(value)[:28]


if __name__ == "__main__":
    main()
