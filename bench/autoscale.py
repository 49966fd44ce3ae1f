"""How fast the real loop reacts: a load step against the local control plane.

For each configuration (the chart's defaults, and the seeds' 240 s scale-up /
300 s scale-down stabilization) this brings up the whole stack
(localcluster), steps the load from nothing to `--users` locust users, and
prints, in seconds from the step: the HPA's first scale-up decision, the
first added pod created and Ready, the peak replica count and when it was
reached, when the per-pod average came back under the target (as the
simulator counts it: figures.back_under), and, once the scale-down window
after the peak has passed, the median replica count and how often it changed.
Then it prints the reaction-time budget (scrape interval + rate window + HPA
sync + pod readiness) to compare the measurements against.

Replicas are the Deployment's, read beside the HPA every second: the HPA's
status.currentReplicas is the count it read before its own rescale
(setStatus in horizontal.go), one sync behind the pods it creates.

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
from dataclasses import dataclass
from pathlib import Path

import yaml

from inferscale.simulation.chart_values import seconds
from inferscale.simulation.figures import back_under_text
from inferscale.simulation.hpa import DOWNSCALE_STABILIZATION_SECONDS
from localcluster.hpa import HpaRecorder, HpaSample, ready_replicas
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


def offer_load(
    stack: LocalStack, users: int, user_rps: float, seconds: float, arrival_log: Path | None = None
) -> subprocess.CompletedProcess:
    """`users` locust users, all started within a second, for `seconds`; locust's summary is in its output.
    With `arrival_log`, the wall-clock start and the status of every request sent are appended to that file."""
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


@dataclass(frozen=True)
class Reading:
    """One look at the loop, `at` seconds from the load step."""

    at: float
    replicas: int  # the Deployment's spec.replicas: what the HPA's rescale set
    ready: int  # the Deployment's status.readyReplicas
    desired: int  # the HPA's status.desiredReplicas
    metric: float | None  # the per-pod average duration the HPA read; None while it has none


def paired_readings(pairs: list[tuple[HpaSample, dict]], offset: float) -> list[Reading]:
    """The recorder's HPA samples with the Deployment read beside each
    (HpaRecorder's `pairs`); an offset metric's readings as the duration."""
    return [
        Reading(
            hpa.at,
            deployment["spec"]["replicas"],
            ready_replicas(deployment),
            hpa.desired,
            with_offset(hpa.metric, offset),
        )
        for hpa, deployment in pairs
    ]


def with_offset(value: float | None, offset: float) -> float | None:
    """An offset metric's reading (the chart's autoscaling.durationOffsetSeconds) as the duration it offsets."""
    return None if value is None else value + offset


@dataclass(frozen=True)
class Run:
    load_seconds: float
    steady_seconds: float  # the least span of readings the steady figures are taken over
    target: float
    scale_down_window: float  # the HPA's: until it has passed after the peak, the peak is all it can hold
    min_replicas: int  # the pods at rest when the load steps: a scale-up is a count above them
    duration_offset: float  # autoscaling.durationOffsetSeconds: what the HPA's readings have taken off


def measure(label: str, config: StackConfig, users: int, user_rps: float, run: Run) -> dict:
    with LocalStack(config) as stack:
        stack.wait_at_rest()
        recorder = HpaRecorder(stack.hpa, period=1.0, read_beside=stack.deployment)
        recorder.start()
        locust = offer_load(stack, users, user_rps, run.load_seconds)
        recorder.stop()
    return summarize(label, paired_readings(recorder.pairs(), run.duration_offset), run, locust)


def first(readings: list[Reading], condition) -> float | None:
    return next((r.at for r in readings if condition(r)), None)


def locust_requests(locust: subprocess.CompletedProcess) -> str:
    """locust's summary row, "Aggregated <requests> <failures>(<percent>)", as "<requests> (<failures>)".
    Raises when locust did not run to its end: no figure of the loop means anything then."""
    output = locust.stdout.splitlines() + locust.stderr.splitlines()
    aggregated = next((line.split() for line in output if line.strip().startswith("Aggregated")), None)
    if locust.returncode not in (0, 1) or aggregated is None:  # 1: some requests failed, which is a figure here
        raise RuntimeError(f"locust failed (exit {locust.returncode}):\n{locust.stderr[-2000:]}")
    return f"{aggregated[1]} ({aggregated[2]})"


def summarize(label: str, readings: list[Reading], run: Run, locust: subprocess.CompletedProcess) -> dict:
    requests = locust_requests(locust)
    at_rest = run.min_replicas
    scaled = first(readings, lambda r: r.replicas > at_rest)
    peak = max(r.replicas for r in readings)
    # Without a scale-up there is no peak to reach or recover from.
    reached = first(readings, lambda r: r.replicas == peak) if scaled is not None else None
    steady = steady_replicas(readings, run, reached or 0.0)
    return {
        "config": label,
        "first scale-up decision": first(readings, lambda r: r.desired > at_rest),
        "replicas first above minReplicas (pod created)": scaled,
        "first added pod Ready": first(readings, lambda r: r.ready > at_rest),
        "peak replicas": peak,
        "peak reached": reached,
        "latency back under target": back_under_text([(r.at, r.metric) for r in readings], run.target, 0.0, " s"),
        **steady,
        "requests (failed)": requests,
    }


def steady_replicas(readings: list[Reading], run: Run, peak_at: float) -> dict:
    """The median replicas and their changes from the scale-down window after the peak
    to the end of the load: before it, the HPA still holds the peak's recommendation."""
    since = peak_at + run.scale_down_window
    if run.load_seconds - since < run.steady_seconds:
        short = f"not reached: hold the load >= {since + run.steady_seconds:.0f} s"
        return {"steady replicas (median)": short, "replica changes while steady": short}
    steady = [r.replicas for r in readings if since <= r.at < run.load_seconds]
    return {
        "steady replicas (median)": f"{statistics.median(steady):g} (from {since:.0f} s)",
        "replica changes while steady": sum(1 for a, b in itertools.pairwise(steady) if a != b),
    }


def scale_down_window(values: dict) -> float:
    behavior = values["autoscaling"].get("behavior") or {}
    window = (behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds")
    # Kubernetes' own when the HPA's behavior sets none, as the simulator has it.
    return float(DOWNSCALE_STABILIZATION_SECONDS if window is None else window)


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
    user_rps = 0.5 if args.fast else 0.2
    users = args.users or 5
    # One pod serves slots / inference seconds.
    capacity = installed["server"]["modelConcurrency"] / installed["server"]["inferenceDurationSeconds"]
    load_seconds = args.load_seconds or (240 if args.fast else 720)
    steady_seconds = load_seconds / 4
    results = []
    for label, extra in (("chart defaults", {}), ("seeds 240s up / 300s down", SEEDS_BEHAVIOR)):
        values = merged(installed, extra)
        with tempfile.TemporaryDirectory() as work:
            config = StackConfig(
                workdir=Path(work),
                chart_values=merged(chart_values, extra),
                **base,
            )
            run = Run(
                load_seconds,
                steady_seconds,
                target,
                scale_down_window(values),
                installed["autoscaling"]["minReplicas"],
                values["autoscaling"].get("durationOffsetSeconds") or 0.0,
            )
            result = measure(label, config, users, user_rps, run)
        results.append(result)
        print(result, flush=True)
    print(
        f"\n# load step: 0 -> {users} users x {user_rps} req/s ({users * user_rps / capacity:g} pods' worth) "
        f"for {load_seconds:.0f} s; target {target} s; steady: at least {steady_seconds:.0f} s of readings "
        "after the scale-down window that follows the peak"
    )
    keys = [k for k in results[0] if k != "config"]
    print(f"{'':36}" + "".join(f"{r['config']:>40}" for r in results))
    for key in keys:
        print(f"{key:36}" + "".join(f"{fmt(r[key]):>40}" for r in results))
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
    return str(value)


if __name__ == "__main__":
    main()
