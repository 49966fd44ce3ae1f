"""The simulator against the real loop: one load step up and down on the local control plane, the same run simulated.

Brings up the whole stack (localcluster) in the chosen timing, steps the load
from nothing to `--times` × one pod's capacity with the locustfile (Poisson
arrivals, as it sends by default), holds it `--up` seconds, stops it, and
reads the HPA every second until `--down` seconds later; locust writes when
it sent each request (bench/arrival_log.py). Then the simulator runs the same
values and timing with `--seeds` seeds, on a cluster with the node's room for
pods (its allocatable CPU and memory less the other pods' requests: fewer
than maxReplicas on a 2-core machine), twice: with Poisson draws of the same
rate, and with the measured arrivals replayed (the seeds then draw only the
routing, the scrape and sync phases and the readiness delays). For each it
prints, per seed, the share of measured samples whose simulated replicas
are within ±1, and the simulated first scale-up against the measured one;
then the share of measured readings within the seeds' range ±1, the
replicas over the load's second half against the fewest always-on pods
that hold the target for that load and against the same load held 4 h with
Poisson draws (the steady count bench-tune judges, which a run of minutes
cannot show), how long each pod the scale-up added took to turn Ready,
measured (the Deployment's Ready count, read beside the HPA, in runs from
docs/calibration/offset-0-second-run.json on) and simulated, and what
the HPA read at its syncs up to the first scale-up, measured and at the
median seed (both metrics; a run measured before 2026-12-04 has the
measured duration only). The replay
is the calibration: a draw and the real run are two samples of the same
random arrivals, whose bursts decide a step's peak (a run saved before
arrivals were recorded, 2026-12-03, has the draws only). A plot of
both trajectories (replicas, and the per-pod average the HPA acted on) goes
to docs/calibration/<timing>.png, and the measurement to <timing>.json beside
it, so that `--replot` redraws it after a change to the simulator without
another run on the cluster.

    python bench/calibrate.py --timing fast            # ~12 min
    python bench/calibrate.py --timing chart           # ~37 min: the chart's defaults, a 20-minute step
    python bench/calibrate.py --timing offset-0        # ~37 min: the defaults until 2026-12-07, the bare duration
    python bench/calibrate.py --timing offset-0 --run docs/calibration/offset-0-second-run.json
    python bench/calibrate.py --timing offset-0 --times 2 --up 1800 --run docs/calibration/offset-0-2x.json
                                                       # ~47 min: goal 2's load, held past the scale-down window
    python bench/calibrate.py --timing target-13       # ~37 min: a 13 s target, 0.6, 0.75 up, two pods at rest
    python bench/calibrate.py --timing target-13 --run docs/calibration/target-13-second-run.json
    python bench/calibrate.py --timing target-13 --times 2 --up 1800 --run docs/calibration/target-13-2x.json
    python bench/calibrate.py --timing offset-4        # ~37 min: the chart's defaults since 2026-12-07, pinned
    python bench/calibrate.py --timing offset-4 --times 2 --up 1800 --run docs/calibration/offset-4-2x.json
                                                       # ~47 min: a 4 s offset, 0.4 up, at goal 2's load
    python bench/calibrate.py --timing min-replicas-1  # ~37 min: the same from one pod at rest (until 2026-12-06)
    python bench/calibrate.py --timing scale-up-per-30s  # ~37 min: that with the scale-up step until 2026-12-03
    python bench/calibrate.py --timing utilization-0.7 # ~37 min: the defaults of 2026-12-02 until the tune over seeds
    python bench/calibrate.py --timing duration-only   # ~30 min: the defaults until 2026-12-02
    python bench/calibrate.py --timing scale-up-tolerance  # ~37 min: a 13 s target, 0.65, 0.75 up
    python bench/calibrate.py --timing offset-4 --replot
    python bench/calibrate.py --timing min-replicas-1 --among docs/calibration/min-replicas-1*.json
    python bench/calibrate.py --timing offset-0 --seeds 100 --ranks docs/calibration/offset-0*.json \
        target-13=docs/calibration/target-13.json

`--among` simulates nothing: it judges saved runs of one timing against each
other exactly as a seed is judged against a run, which measures how closely
the real loop repeats itself (the floor under any simulator's ±1 share).
`--ranks` replays saved runs (of `--timing`, or TIMING=RUN) with `--seeds` seeds
each and prints where each run's peak, steady replicas, refusals and added
pods' median wait for Ready fall among the seeds' and their means over all
the runs: a
step's free peak is a draw, so one run against the median of 10 seeds says
little, and the ranks of many runs say whether the simulator runs high or low.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display here or in CI
import matplotlib.pyplot as plt  # noqa: E402
from kubernetes.utils.quantity import parse_quantity  # noqa: E402

from inferscale.simulation import load  # noqa: E402
from inferscale.simulation.calibration import (  # noqa: E402
    WITHIN_SHARE,
    Agreement,
    Observed,
    agreement,
    as_trace,
    back_to_min_observed,
    mean_measured_value,
    mean_simulated_value,
    median_agreement,
    median_observed_replicas,
    mid_rank,
    observed_ready_lags,
    peak_observed_replicas,
    readings_to_first_scale_up,
    seed_ranges,
    seed_ready_medians,
    share_over,
    simulated_ready_lags,
    syncs_to_first_scale_up,
    within_seeds,
)
from inferscale.simulation.chart_values import seconds  # noqa: E402
from inferscale.simulation.figures import (  # noqa: E402
    HOLD_SECONDS,
    REFUSAL_WINDOW_SECONDS,
    back_to,
    back_under,
    back_under_target,
    median_replicas,
    peak_replicas,
    refused_percent,
)
from inferscale.simulation.loop import Loop, Trace  # noqa: E402
from inferscale.simulation.scenarios import Model, fewest_fixed, scenario  # noqa: E402
from inferscale.simulation.scenarios import run as run_scenario  # noqa: E402
from inferscale.simulation.values_yaml import read_values  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

from autoscale import offer_load, with_offset  # noqa: E402 - bench/ is this script's directory

from localcluster.hpa import HpaRecorder, ready_replicas  # noqa: E402
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig, merged  # noqa: E402

OUT = ROOT / "docs" / "calibration"
# The locustfile's users each offer this many requests/s; the fast timing's
# 1 s inferences get proportionally busier users, as in bench/autoscale.py.
USER_RPS = {
    "fast": 0.5,
    "duration-only": 0.2,
    "utilization-0.7": 0.2,
    "scale-up-per-30s": 0.2,
    "min-replicas-1": 0.2,
    "offset-0": 0.2,
    "target-13": 0.2,
    "scale-up-tolerance": 0.2,
    "offset-4": 0.2,
    "chart": 0.2,
}
DEFAULT_SECONDS = {
    "fast": (240.0, 240.0),
    "duration-only": (720.0, 600.0),
    "utilization-0.7": (1200.0, 600.0),
    "scale-up-per-30s": (1200.0, 600.0),
    "min-replicas-1": (1200.0, 600.0),
    "offset-0": (1200.0, 600.0),
    "target-13": (1200.0, 600.0),
    "scale-up-tolerance": (1200.0, 600.0),
    "offset-4": (1200.0, 600.0),
    "chart": (1200.0, 600.0),
}
# Simulated hours of each fewest-fixed search, as in bench-simulate's and bench-tune's tables.
FIXED_HOURS = 4.0
DURATION_ONLY = {"autoscaling": {"slotUtilization": {"enabled": False}}}
# The chart's scale-up policies until 2026-12-03, which every saved run but
# the fast one (its own policies) and the chart's was measured with.
SCALE_UP_PER_30S = {
    "scaleUp": {
        "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 30},
            {"type": "Pods", "value": 4, "periodSeconds": 30},
        ]
    }
}
SCALE_DOWN_300 = {"scaleDown": {"stabilizationWindowSeconds": 300}}
# The HPA read the bare duration, with Kubernetes' 10 % band both ways, until
# 2026-12-07: every saved run before offset-4's was measured so.
BARE_DURATION = {"durationOffsetSeconds": 0, "behavior": {"scaleUp": {"tolerance": 0.1}}}
# 10 s scrapes and a 40s window, the chart's since 2026-12-02. The pods
# request 100m CPU instead of 250m so that this 2-core node has room for the
# 10-15 pods a 5x step needs (they sleep, not compute).
TEN_SECOND_SCRAPES = dict(
    scrape_interval="10s",
    rate_window="40s",
    chart_values={
        "serviceMonitor": {"interval": "10s"},
        "autoscaling": {"rateWindow": "40s", "maxReplicas": 20, **BARE_DURATION},
        "resources": {"requests": {"cpu": "100m"}},
    },
)


def thirteen_second_target(utilization: float) -> dict:
    """A 13 s duration target, `utilization` of the slots and a 0.75 tolerance on the way up (bench/tune.py)."""
    return {
        "chart_values": {
            "autoscaling": {
                "targetAverageDurationSeconds": 13,
                "slotUtilization": {"target": utilization},
                "behavior": {"scaleUp": {"tolerance": 0.75}},
            }
        }
    }


# StackConfig's settings for each timing. Each pins what its saved run was
# measured with, so that --replot simulates that run whatever the chart's
# defaults have become since: every saved run but the fast one (FAST_LOOP
# pins its own), offset-0's, target-13's and offset-4's keeps one pod at rest
# (minReplicas 1, the chart's until 2026-12-06), and every one before
# offset-4's reads the bare duration with the HPA's own band (BARE_DURATION).
STACKS = {
    # The end-to-end test's timing, measured with the duration metric alone.
    "fast": merged(FAST_LOOP, {"chart_values": DURATION_ONLY}),
    # The chart's defaults until 2026-12-02: 15 s scrapes, a 1m window, the
    # duration metric alone, at most 10 pods, a 300 s scale-down window.
    "duration-only": dict(
        scrape_interval="15s",
        rate_window="1m",
        chart_values=merged(
            DURATION_ONLY,
            {
                "serviceMonitor": {"interval": "15s"},
                "autoscaling": merged(
                    BARE_DURATION,
                    {
                        "minReplicas": 1,
                        "rateWindow": "1m",
                        "maxReplicas": 10,
                        "behavior": merged(SCALE_UP_PER_30S, SCALE_DOWN_300),
                    },
                ),
            },
        ),
    ),
    # The chart's defaults from then until bench/tune.py ran over seeds: the
    # slot utilization (0.7) beside the duration, a 300 s scale-down window.
    "utilization-0.7": merged(
        TEN_SECOND_SCRAPES,
        {
            "chart_values": {
                "autoscaling": {
                    "minReplicas": 1,
                    "slotUtilization": {"enabled": True, "target": 0.7},
                    "behavior": merged(SCALE_UP_PER_30S, SCALE_DOWN_300),
                }
            }
        },
    ),
    # The chart's defaults from then until 2026-12-06: bench/tune.py's best
    # row over 5 seeds, a 0.75 utilization target and a 420 s scale-down
    # window, with chart/values.yaml's scale-up policies (Kubernetes' own
    # default, 100 % or 4 pods per 15 s, since 2026-12-03: bench/tune.py's
    # fifth sweep), and one pod at rest.
    "min-replicas-1": merged(
        TEN_SECOND_SCRAPES,
        {
            "chart_values": {
                "autoscaling": {
                    "minReplicas": 1,
                    "slotUtilization": {"enabled": True, "target": 0.75},
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 420}},
                }
            }
        },
    ),
}
# The chart's defaults from 2026-12-06 until 2026-12-07: the same with two pods
# at rest (bench/tune.py's sixth sweep).
STACKS["offset-0"] = merged(STACKS["min-replicas-1"], {"chart_values": {"autoscaling": {"minReplicas": 2}}})
# bench/tune.py's seventh sweep's choice, which the real loop did not bear out
# (docs/sizing.md): the chart's defaults with a 13 s target, 0.6 utilization
# and a 0.75 tolerance on the way up.
STACKS["target-13"] = merged(STACKS["offset-0"], thirteen_second_target(0.6))
# The chart's defaults until 2026-12-03: one pod at rest, the scale-up policies of then.
STACKS["scale-up-per-30s"] = merged(
    STACKS["min-replicas-1"], {"chart_values": {"autoscaling": {"behavior": SCALE_UP_PER_30S}}}
)

# One of bench/tune.py's rows with a wider tolerance on the way up (Kubernetes'
# HPAConfigurableTolerance, on in the local control plane): the defaults of
# "scale-up-per-30s" with a 13 s target, 0.65 utilization and 0.75 up (docs/sizing.md).
STACKS["scale-up-tolerance"] = merged(STACKS["scale-up-per-30s"], thirteen_second_target(0.65))
# bench/tune.py's eighth sweep's best row: those defaults read through a 4 s
# offset (autoscaling.durationOffsetSeconds), with a 0.4 tolerance on the way
# up; the chart's defaults since 2026-12-07, which "chart" follows.
STACKS["offset-4"] = merged(
    STACKS["offset-0"],
    {"chart_values": {"autoscaling": {"durationOffsetSeconds": 4, "behavior": {"scaleUp": {"tolerance": 0.4}}}}},
)
STACKS["chart"] = STACKS["offset-4"]


def stack_config(timing: str, workdir: Path) -> StackConfig:
    return StackConfig(workdir=workdir, **STACKS[timing])


def model_of(timing: str) -> Model:
    """The simulator's model of the stack `stack_config` brings up."""
    values = read_values((ROOT / "chart" / "values.yaml").read_text())
    stack = stack_config(timing, ROOT)
    return Model.from_chart_values(merged(values, stack.chart_values), sync_period=seconds(stack.hpa_sync_period))


def schedulable_pods(stack: LocalStack) -> int:
    """How many of the Deployment's pods the node can run: what its allocatable
    CPU and memory leave after every other pod's requests, as kube-scheduler
    counts them. On this 2-core node it is fewer than `maxReplicas`; the rest
    of a scale-up stays Pending."""
    [node] = stack.api.items("/api/v1/nodes")
    template = stack.api.get(f"/apis/apps/v1/namespaces/{stack.config.namespace}/deployments/{stack.fullname}")
    pod = requests_of(template["spec"]["template"]["spec"])
    others = [
        p
        for p in stack.api.items("/api/v1/pods")
        if p["metadata"]["namespace"] != stack.config.namespace
        and p["spec"].get("nodeName")
        and p["status"].get("phase") not in ("Succeeded", "Failed")
    ]
    left = {
        resource: parse_quantity(node["status"]["allocatable"][resource])
        - sum(requests_of(p["spec"])[resource] for p in others)
        for resource in pod
    }
    return min(int(left[resource] // pod[resource]) for resource in pod if pod[resource])


def requests_of(pod_spec: dict) -> dict:
    containers = pod_spec["containers"]
    return {
        resource: sum(parse_quantity(c.get("resources", {}).get("requests", {}).get(resource, "0")) for c in containers)
        for resource in ("cpu", "memory")
    }


@dataclass(frozen=True)
class Measured:
    observed: list[Observed]
    schedulable: int
    arrivals: list[float]  # seconds from the step at which each request was sent
    refused: list[float]  # the arrivals answered 503


def measure(timing: str, users: int, up: float, down: float, offset: float) -> Measured:
    """`offset`: what the HPA's duration readings have taken off (the timing's durationOffsetSeconds)."""
    with tempfile.TemporaryDirectory() as work, LocalStack(stack_config(timing, Path(work))) as stack:
        stack.wait_at_rest()
        schedulable = schedulable_pods(stack)
        print(f"# the node has room for {schedulable} of the Deployment's pods", flush=True)
        arrival_log = Path(work) / "arrivals.txt"
        recorder = HpaRecorder(stack.hpa, period=1.0, read_beside=stack.deployment)
        recorder.start()
        try:
            step_at, step_wall = recorder.elapsed(), time.time()
            locust = offer_load(stack, users, USER_RPS[timing], up, arrival_log)
            if locust.returncode not in (0, 1):  # 1: some requests failed, which is a figure here
                raise RuntimeError(f"locust failed:\n{locust.stderr[-2000:]}")
            stopped_at = recorder.elapsed()
            time.sleep(down)
        finally:
            recorder.stop()
        print(f"# load stopped {stopped_at - step_at:.0f} s after the step; {recorder.failed_reads} failed reads")
        arrivals, refused = read_arrival_log(arrival_log.read_text(), step_wall)
    # An offset metric reads the duration less the offset: saved, and compared, as the duration.
    observed = [
        Observed(s.at - step_at, s.desired, with_offset(s.metric, offset), s.second, ready_replicas(deployment))
        for s, deployment in recorder.pairs()
    ]
    return Measured(observed, schedulable, arrivals, refused)


def read_arrival_log(text: str, step_wall: float) -> tuple[list[float], list[float]]:
    """bench/arrival_log.py's lines, "<wall-clock start> <status>": the seconds
    from the step of every request sent, and of those answered 503 (a full
    queue; a draining pod's 503 too, but no pod drains in a step's first
    minutes). A line cut short by locust's exit has no status: sent, not refused."""
    arrivals, refused = [], []
    for fields in (line.split() for line in text.splitlines()):
        if not fields:
            continue
        at = round(float(fields[0]) - step_wall, 3)
        arrivals.append(at)
        if fields[1:] == ["503"]:
            refused.append(at)
    return sorted(arrivals), sorted(refused)


def simulate(model: Model, rate: float, user_rps: float, up: float, end: float, seed: int) -> Trace:
    shape = load.spike(0.0, rate, 0.0, up)
    return Loop(
        model.hpa, model.pod, model.timing, "poisson", seed, user_rps=user_rps, max_running_pods=model.max_running_pods
    ).run(shape, end)


def replay(model: Model, arrivals: list[float], end: float, seed: int) -> Trace:
    loop = Loop(model.hpa, model.pod, model.timing, seed=seed, max_running_pods=model.max_running_pods)
    return loop.replay(arrivals, end)


def on_its_node(model: Model, run: dict) -> Model:
    """The model on the node a saved run was measured on: the node's room, as measure() found it."""
    return replace(model, max_running_pods=run["schedulable"])


def replays(node: Model, run: dict, seeds: range) -> list[Trace]:
    """A saved run's measured arrivals replayed, one run per seed, by the
    model of the node it was measured on (`on_its_node`)."""
    return [replay(node, run["arrivals"], run["observed"][-1]["at"], seed) for seed in seeds]


def second_half(run: dict) -> tuple[float, float]:
    """The load's second half: past the scale-up, before the stop."""
    return run["up"] / 2, run["up"]


def compare(label: str, observed: list[Observed], traces: list[Trace], model: Model) -> list[Agreement]:
    """Print how each seed's run agrees with the measured one; the agreements."""
    agreements = [agreement(observed, trace, model.hpa.min_replicas) for trace in traces]
    report(label, agreements)
    ranges = seed_ranges(observed, traces)
    width = statistics.median(high - low for _, low, high in ranges)
    print(
        f"measured replicas within the {len(traces)} seeds' range ±1: {100 * within_seeds(ranges):.0f} % "
        f"of the readings from the step on (the range is {width:g} pods wide at the median reading)"
    )
    return agreements


def among(paths: list[Path], model: Model) -> None:
    """Print each saved run judged against each other one, as `compare` judges a seed against the run."""
    runs = {path.name: json.loads(path.read_text()) for path in paths}
    if len(runs) < 2:
        raise SystemExit("--among needs two runs or more")
    load_of = {name: tuple(run[key] for key in ("times", "users", "user_rps", "up")) for name, run in runs.items()}
    if len(set(load_of.values())) > 1:
        differing = ", ".join(f"{name}: {load}" for name, load in load_of.items())
        raise SystemExit(f"--among compares runs of one load (times, users, user_rps, up); these differ: {differing}")
    observed = {name: [Observed(**o) for o in run["observed"]] for name, run in runs.items()}
    print("# the real loop against itself: each measured run (row) judged against another (column) as against a seed")
    print("# replicas within ±1 at the row's readings from the step on; first scale-up, row / column")
    width = max(map(len, runs))
    print(f"{'':<{width}}  " + "  ".join(f"{name:>{width}}" for name in runs))
    agreements = []
    for name, readings in observed.items():
        cells = []
        for other, other_readings in observed.items():
            if other == name:
                cells.append(f"{'-':>{width}}")
                continue
            a = agreement(readings, as_trace(other_readings), model.hpa.min_replicas)
            agreements.append(a)
            cell = f"{100 * a.within_share:.0f} %, {fmt(a.first_scale_up_measured)} / {fmt(a.first_scale_up_simulated)}"
            cells.append(f"{cell:>{width}}")
        print(f"{name:<{width}}  " + "  ".join(cells))
    shares = [a.within_share for a in agreements]
    apart = [abs(a.first_scale_up_error) if a.first_scale_up_error is not None else None for a in agreements]
    print(
        f"median over the {len(agreements)} ordered pairs: {100 * statistics.median(shares):.0f} % within ±1 "
        f"(range {100 * min(shares):.0f}..{100 * max(shares):.0f} %; goal {100 * WITHIN_SHARE:.0f} %, reached by "
        f"{sum(share >= WITHIN_SHARE for share in shares)}); first scale-ups {fmt_range(apart)} apart (goal ±15 s); "
        f"pairs that would count as calibrated: {sum(a.calibrated for a in agreements)} of {len(agreements)}"
    )


def ranked_run(item: str, default_timing: str) -> tuple[str, Path]:
    """One --ranks argument: a saved run of --timing, or TIMING=RUN for a run of another timing."""
    timing, sep, path = item.partition("=")
    return (timing, Path(path)) if sep and timing in STACKS else (default_timing, Path(item))


def ranks(runs: list[tuple[str, Path]], seeds: range) -> None:
    """Print where each saved run's peak, steady replicas, refusals and added
    pods' median wait for Ready fall among the seeds' replays of its
    arrivals, and the mean over all the runs:
    one run against one median seed cannot tell a simulator that runs high or
    low from a draw of the same randomness, many runs' ranks can."""
    print(f"# each run's arrivals replayed with {len(seeds)} seeds; mid-rank of the measured figure among theirs:")
    print("# 0 under every seed, 1 over every seed; 0.5 on average over many runs if the simulator draws alike")
    ranked: dict[str, list[float]] = {"peak": [], "steady": [], "refused": [], "ready": []}
    for timing, path in runs:
        run = json.loads(path.read_text())
        measured_in = run.get("timing", timing)  # the runs before offset-0-second-run.json do not say
        if measured_in != timing:
            raise SystemExit(f"{path}: measured in the {measured_in} timing, not {timing}: pass {measured_in}={path}")
        if "arrivals" not in run:
            print(f"{path.name}, {timing} timing: skipped, no arrivals recorded with this run")
            continue
        observed = [Observed(**o) for o in run["observed"]]
        model = on_its_node(model_of(timing), run)
        traces = replays(model, run, seeds)
        start, stop = second_half(run)
        figures = [("peak", "peak", peak_observed_replicas(observed), [peak_replicas(t) for t in traces])]
        steady = median_observed_replicas(observed, start, stop)
        if steady is not None:  # a run read over the load's second half
            steadies = [median_replicas(t, start, stop) for t in traces]
            figures.append((f"steady from {start:.0f} to {stop:.0f} s", "steady", steady, steadies))
        counted = refused_of_sent(run)
        if counted and counted[1]:
            figures.append(
                (
                    f"refused in the first {REFUSAL_WINDOW_SECONDS:.0f} s, %",
                    "refused",
                    100 * counted[0] / counted[1],
                    [refused_percent(t, 0.0, REFUSAL_WINDOW_SECONDS) for t in traces],
                )
            )
        lags = observed_ready_lags(observed, model.hpa.min_replicas)
        if lags:  # a run measured with the Deployment's Ready count, that scaled up
            medians = seed_ready_medians(traces, model.hpa.min_replicas)
            if medians:  # ranked among the seeds that added a pod, which says how many when not all did
                label = "added pods' median wait for Ready, s"
                if len(medians) < len(traces):
                    label += f" ({len(medians)} of {len(traces)} seeds added pods)"
                figures.append((label, "ready", statistics.median(lags), medians))
        parts = []
        for label, key, measured, simulated in figures:
            ranked[key].append(mid_rank(measured, simulated))
            parts.append(
                f"{label} {measured:.3g} against {min(simulated):.3g}..{max(simulated):.3g}, "
                f"median {statistics.median(simulated):.3g} (mid-rank {ranked[key][-1]:.2f})"
            )
        print(f"{path.name}, {timing} timing: " + "; ".join(parts))
    means = [f"{key} {statistics.mean(r):.2f} over {len(r)} runs" for key, r in ranked.items() if r]
    if means:
        print("mean mid-rank: " + ", ".join(means))


def plot(
    path: Path,
    title: str,
    observed: list[Observed],
    traces: list[Trace],
    chosen: int,
    up: float,
    target: float,
    schedulable: int,
) -> None:
    figure, (replicas, latency) = plt.subplots(2, 1, sharex=True, figsize=(9, 6.5))
    end = observed[-1].at
    for i, trace in enumerate(traces):
        points = [*trace.replicas, (end, trace.replicas[-1][1])]
        style = dict(color="tab:orange", alpha=0.9 if i == chosen else 0.2, linewidth=2 if i == chosen else 1)
        label = "simulated (median seed; others faint)" if i == chosen else None
        replicas.step([p[0] for p in points], [p[1] for p in points], where="post", label=label, **style)
        syncs = [s for s in trace.syncs if s.value is not None]
        latency.plot([s.at for s in syncs], [s.value for s in syncs], label=label, **style)
    measured = [o for o in observed if o.at >= 0]
    replicas.step(
        [o.at for o in measured],
        [o.replicas for o in measured],
        where="post",
        color="tab:blue",
        linewidth=2,
        label="measured (HPA desiredReplicas)",
    )
    read = [o for o in measured if o.value is not None]
    latency.plot(
        [o.at for o in read],
        [o.value for o in read],
        color="tab:blue",
        linewidth=2,
        label="measured (HPA current value)",
    )
    latency.axhline(target, color="grey", linestyle="--", label=f"target {target:g} s")
    for axis in (replicas, latency):
        axis.axvspan(0, up, color="grey", alpha=0.08)
        axis.grid(alpha=0.3)
    replicas.axhline(schedulable, color="grey", linestyle=":", label=f"the node's room: {schedulable} pods")
    replicas.set_ylabel("replicas")
    latency.set_ylabel("per-pod average (s)")
    latency.set_xlabel("seconds from the load step (shaded: load on)")
    replicas.legend(loc="upper right", fontsize=8)
    latency.legend(loc="upper right", fontsize=8)
    replicas.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(label: str, agreements: list[Agreement]) -> None:
    print(f"\n# {label}: each seed's run against the measured one")
    print(f"{'seed':>4}  {'replicas within ±1':>20}  {'first scale-up, measured / simulated':>38}")
    for seed, a in enumerate(agreements, start=1):
        first = f"{fmt(a.first_scale_up_measured)} / {fmt(a.first_scale_up_simulated)}"
        print(f"{seed:>4}  {a.within}/{a.samples} ({100 * a.within_share:.0f} %){'':>6}  {first:>38}")
    median = median_agreement(agreements)
    errors = sorted(abs(a.first_scale_up_error) for a in agreements if a.first_scale_up_error is not None)
    print(
        f"median seed: {100 * median.within_share:.0f} % within ±1 (goal ≥ 90 %); first scale-up "
        f"{fmt(median.first_scale_up_error, signed=True)} off (goal ±15 s); calibrated: {median.calibrated}"
    )
    if errors:
        print(f"first scale-up error over all seeds: {errors[0]:.0f}..{errors[-1]:.0f} s")


def print_first_readings(observed: list[Observed], trace: Trace, model: Model) -> None:
    """What the HPA read at its syncs up to the first scale-up, which the ±15 s goal compares."""
    measured = readings_to_first_scale_up(observed, model.hpa.min_replicas)
    simulated = syncs_to_first_scale_up(trace, model.hpa.min_replicas)
    print(
        "readings to the first scale-up (s from the step: desired, duration / slot utilization): measured "
        + "; ".join(f"{o.at:.0f}: {o.replicas}, {fmt_number(o.value)} / {fmt_number(o.second)}" for o in measured)
        + "\n  simulated (median seed): "
        + "; ".join(
            f"{s.at:.0f}: {s.desired}, {fmt_number(s.value)} / "
            + fmt_number(None if s.held is None else s.held / model.pod.slots)
            for s in simulated
        )
    )


def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def fmt_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "never"
    return f"{value:+.0f} s" if signed else f"{value:.0f} s"


def fmt_range(values: list[float | None]) -> str:
    """The known values' range; "never" stands for the seeds that never got there."""
    known = [v for v in values if v is not None]
    never = len(values) - len(known)
    span = f"{fmt(min(known))}..{fmt(max(known))}" if known else "never"
    return span + (f", {never} never" if known and never else "")


def fmt_share(share: float | None) -> str:
    return "none" if share is None else f"{100 * share:.0f} %"


def fmt_value(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", choices=tuple(STACKS), required=True)
    parser.add_argument("--times", type=float, default=5.0, help="load as a multiple of one pod's capacity")
    parser.add_argument("--up", type=float, default=None, help="seconds the load stays on")
    parser.add_argument("--down", type=float, default=None, help="seconds read after it stops")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--replot", action="store_true", help="replay the saved measurement (--run); no cluster")
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help=f"the measurement's file, written by a run and read by --replot; its plot goes beside it as .png "
        f"(default: {OUT.relative_to(ROOT)}/<timing>.json). An earlier run: git show <commit>:<that file> > run.json",
    )
    parser.add_argument(
        "--among",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="no cluster, no simulation: these saved runs of the timing judged against each other",
    )
    parser.add_argument(
        "--ranks",
        nargs="+",
        metavar="RUN",
        help="no cluster: where these saved runs' peak, steady replicas, refusals and wait for Ready fall among "
        "--seeds replays; "
        "TIMING=RUN for a run of another timing than --timing",
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be 1 or more")
    model = model_of(args.timing)
    if args.among:
        among(args.among, model)
        return
    if args.ranks:
        ranks([ranked_run(item, args.timing) for item in args.ranks], range(1, args.seeds + 1))
        return
    user_rps = USER_RPS[args.timing]
    users = round(args.times * model.pod_capacity / user_rps)
    saved = args.run or OUT / f"{args.timing}.json"
    if args.replot:
        run = json.loads(saved.read_text())
    else:
        default_up, default_down = DEFAULT_SECONDS[args.timing]
        up, down = args.up or default_up, args.down or default_down
        measured = measure(args.timing, users, up, down, model.hpa.duration_offset)
        run = {
            "timing": args.timing,
            "times": args.times,
            "users": users,
            "user_rps": user_rps,
            "up": up,
            "schedulable": measured.schedulable,
            "observed": [vars(o) for o in measured.observed],
            "arrivals": measured.arrivals,
            "refused": measured.refused,
        }
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(run, indent=1) + "\n")
    observed = [Observed(**o) for o in run["observed"]]
    end = observed[-1].at
    rate = run["users"] * run["user_rps"]
    model = on_its_node(model, run)
    seeds = range(1, args.seeds + 1)
    traces = [simulate(model, rate, run["user_rps"], run["up"], end, seed) for seed in seeds]
    agreements = compare(f"{args.timing} timing, Poisson draws of the same rate", observed, traces, model)
    if "arrivals" in run:
        # The seeds still draw the routing, the scrape and sync phases and the readiness delays.
        traces = replays(model, run, seeds)
        agreements = compare(f"{args.timing} timing, the measured arrivals replayed", observed, traces, model)
    else:
        print("# no arrivals recorded with this run: Poisson draws of its rate only")
    chosen = agreements.index(median_agreement(agreements))
    start, stop = second_half(run)
    simulated = [mean_simulated_value(trace, start, stop) for trace in traces]
    known = [value for value in simulated if value is not None]
    print(
        f"per-pod average from {start:.0f} to {stop:.0f} s: "
        f"measured {fmt_value(mean_measured_value(observed, start, stop))}, "
        f"simulated {fmt_value(simulated[chosen])} (median seed; "
        f"{fmt_value(min(known))}..{fmt_value(max(known))} over seeds); "
        f"target {model.hpa.target:g} s"
    )
    settled = run["up"] / 4  # past the scale-up
    over = [share_over((s.value for s in trace.syncs if settled <= s.at < stop), model.hpa.target) for trace in traces]
    known = [share for share in over if share is not None]
    print(
        f"share over the target from {settled:.0f} to {stop:.0f} s: measured "
        f"{fmt_share(share_over((o.value for o in observed if settled <= o.at < stop), model.hpa.target))}, "
        f"simulated {fmt_share(over[chosen])} "
        f"(median seed; {fmt_share(min(known, default=None))}..{fmt_share(max(known, default=None))} over seeds)"
    )
    back = [back_under_target(trace, model.hpa.target, 0.0) for trace in traces]
    print(
        f"back under the target for {HOLD_SECONDS:.0f} s after the step: measured "
        f"{fmt(back_under([(o.at, o.value) for o in observed], model.hpa.target, 0.0))}, simulated "
        f"{fmt(back[chosen])} (median seed; {fmt_range(back)} over seeds)"
    )
    print_refusals(run, traces, chosen)
    peaks = [peak_replicas(trace) for trace in traces]
    print(
        f"peak replicas: measured {peak_observed_replicas(observed)}, simulated "
        f"{peaks[chosen]} (median seed; {min(peaks)}..{max(peaks)} over seeds); back to minReplicas after the stop: "
        f"measured {fmt(back_to_min_observed(observed, model.hpa.min_replicas, run['up']))}, simulated "
        f"{fmt(back_to(traces[chosen], model.hpa.min_replicas, run['up']))}"
    )
    print_steady(run, observed, traces, chosen, model)
    print_readiness(observed, traces, chosen, model.hpa.min_replicas)
    print_first_readings(observed, traces[chosen], model)
    simulated_arrivals = "the measured arrivals replayed" if "arrivals" in run else "Poisson draws"
    title = (
        f"{args.timing} timing: {run['users']} users × {run['user_rps']:g} req/s (Poisson) = "
        f"{run['times']:g}× a pod's capacity for {run['up']:.0f} s, then none\nsimulated: {simulated_arrivals}"
    )
    drawn = saved.with_suffix(".png")
    plot(drawn, title, observed, traces, chosen, run["up"], model.hpa.target, run["schedulable"])
    print(f"plot: {drawn.relative_to(ROOT) if drawn.is_relative_to(ROOT) else drawn}")


def print_steady(run: dict, observed: list[Observed], traces: list[Trace], chosen: int, model: Model) -> None:
    """Goal 2: the replicas over the load's second half against the fewest
    always-on pods that hold the target for that load with Poisson arrivals
    (locust's), found as bench-simulate finds them, one per seed."""
    start, stop = second_half(run)
    measured = median_observed_replicas(observed, start, stop)
    simulated = [median_replicas(trace, start, stop) for trace in traces]
    case = scenario("step", model.pod_capacity, run["users"] * run["user_rps"] / model.pod_capacity, FIXED_HOURS)
    # Searched up to maxReplicas only: a baseline past it is one the HPA could never reach anyway.
    limit = model.hpa.max_replicas
    fixed = [fewest_fixed(model, case, "poisson", seed, limit) for seed in range(1, len(traces) + 1)]
    known = [f for f in fixed if f is not None]
    baseline = statistics.median(known) if known else None
    ratio = f"{measured / baseline:.2f}x" if measured is not None and baseline else "-"
    over = len(fixed) - len(known)
    span = ", ".join(
        ([f"{min(known)}..{max(known)}"] if known else []) + ([f"{over} over maxReplicas ({limit})"] if over else [])
    )
    print(
        f"steady replicas from {start:.0f} to {stop:.0f} s (median): measured {fmt_count(measured)}, simulated "
        f"{simulated[chosen]:g} (median seed; {min(simulated):g}..{max(simulated):g} over seeds); fewest fixed "
        f"for this load: {fmt_count(baseline)} (Poisson, {FIXED_HOURS:g} h, median of {len(fixed)} seeds; "
        f"{span}); measured / fewest fixed {ratio}"
    )
    # A run of minutes still carries its peak's way down; the sweeps' steady count comes from hours.
    held = [run_scenario(model, case, "poisson", seed).steady_replicas for seed in range(1, len(traces) + 1)]
    held_ratio = f"{statistics.median(held) / baseline:.2f}x" if baseline else "-"
    print(
        f"the same load held {FIXED_HOURS:g} h (Poisson draws, as bench-tune): steady over the last "
        f"{FIXED_HOURS / 2:g} h {statistics.median(held):g} (median of {len(held)} seeds; "
        f"{min(held):g}..{max(held):g}), {held_ratio} the fewest fixed"
    )


def print_readiness(observed: list[Observed], traces: list[Trace], chosen: int, min_replicas: int) -> None:
    """How long the pods the scale-up added took to turn Ready: on a small
    node, several pods loading their model at once may take longer than the
    simulator's start, load and probe delays, and refuse more meanwhile."""
    measured = observed_ready_lags(observed, min_replicas)
    if measured is None:
        print("added pods' wait for Ready: not recorded with this run (runs from offset-0-second-run.json on)")
        return
    simulated = simulated_ready_lags(traces[chosen], min_replicas)
    print(
        f"added pods' wait for Ready, from the HPA asking for each count above minReplicas to that many Ready: "
        f"measured {fmt_lags(measured)}; simulated {fmt_lags(simulated)} (median seed; "
        f"medians {fmt_range(seed_ready_medians(traces, min_replicas))} over seeds)"
    )


def fmt_lags(lags: list[float]) -> str:
    if not lags:
        return "no pod added"
    return f"median {statistics.median(lags):.0f} s, longest {max(lags):.0f} s over {len(lags)} pods"


def print_refusals(run: dict, traces: list[Trace], chosen: int) -> None:
    """Goal 1's other half: the share refused of the requests sent in the
    step's first REFUSAL_WINDOW_SECONDS (a run saved before 2026-12-06 has
    no record of its 503s: the simulated share only)."""
    simulated = [refused_percent(trace, 0.0, REFUSAL_WINDOW_SECONDS) for trace in traces]
    measured = "not recorded with this run"
    counted = refused_of_sent(run)
    if counted:
        refused, sent = counted
        measured = f"{100 * refused / sent:.2f} % ({refused} of {sent})" if sent else "no requests"
    print(
        f"refused in the {REFUSAL_WINDOW_SECONDS:.0f} s after the step: measured {measured}, simulated "
        f"{simulated[chosen]:.2f} % (median seed; {min(simulated):.2f}..{max(simulated):.2f} % over seeds)"
    )


def refused_of_sent(run: dict) -> tuple[int, int] | None:
    """The 503s and the requests sent in the step's first REFUSAL_WINDOW_SECONDS;
    None for a run saved without its 503s (before 2026-12-06)."""
    if "refused" not in run:
        return None
    sent = sum(1 for at in run["arrivals"] if 0.0 <= at < REFUSAL_WINDOW_SECONDS)
    refused = sum(1 for at in run["refused"] if 0.0 <= at < REFUSAL_WINDOW_SECONDS)
    return refused, sent


if __name__ == "__main__":
    main()
