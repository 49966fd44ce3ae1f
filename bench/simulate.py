"""Every load scenario, with paced and with Poisson arrivals, through the simulated loop.

For each: when the per-pod average is back under the target, peak and steady
replicas against the fewest always-on pods that meet the target for the same
load, refused % in the 10 minutes after the load change, replica changes per hour over the steady span (the last half
of the run), and pod-minutes against those always-on pods. The ratios are
against that baseline, found by the same simulator in the same run.

    python bench/simulate.py [--values chart/values.yaml] [--hours 4] [--seed 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inferscale.simulation.figures import REFUSAL_WINDOW_SECONDS, Figures
from inferscale.simulation.scenarios import Model, fewest_fixed, run, scenario
from inferscale.simulation.values_yaml import read_values

ROOT = Path(__file__).resolve().parent.parent
# (scenario, height in pods' worth of load)
CASES = (("step", 2), ("step", 5), ("step", 10), ("ramp", 5), ("spike", 10), ("sine", 5), ("stop", 5))


def seconds_or_never(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def back_under(figures: Figures) -> str:
    return "never over" if figures.never_over_target else seconds_or_never(figures.back_under_target_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default=str(ROOT / "chart" / "values.yaml"))
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model = Model.from_chart_values(read_values(Path(args.values).read_text()))
    print(
        f"{args.values}: target {model.hpa.target:g} s, one pod answers {model.pod_capacity:g} req/s, "
        f"{args.hours:g} h simulated per row\n"
    )
    print(
        "| load | arrivals | back under target, s | back to min, s | peak | steady | fewest fixed "
        f"| refused %, from the change to {REFUSAL_WINDOW_SECONDS / 60:g} min after the load settles (sine: all) "
        "| changes/h (steady) | pod-minutes / fixed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, times in CASES:
        for arrivals in ("paced", "poisson"):
            case = scenario(name, model.pod_capacity, times, args.hours)
            figures = run(model, case, arrivals, args.seed)
            fixed = fewest_fixed(model, case, arrivals, args.seed)
            ratio = f"{figures.pod_minutes / (fixed * case.seconds / 60):.2f}" if fixed else "-"
            print(
                f"| {name} {times:g}x | {arrivals} | {back_under(figures)} "
                f"| {seconds_or_never(figures.back_to_min_seconds) if name == 'stop' else '-'} "
                f"| {figures.peak_replicas} | {figures.steady_replicas:g} | {fixed or '-'} "
                f"| {figures.refused_percent:.2f} | {figures.changes_per_hour:.1f} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
