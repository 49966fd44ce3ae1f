"""The `inferscale` command."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import re
import sys
from typing import TYPE_CHECKING

import inferscale

if TYPE_CHECKING:
    from pydantic import ValidationError

    from inferscale.simulation.chart_values import Autoscaling, ServiceMonitor

# Spelled out, not imported from inferscale.multiprocess: importing that would
# import prometheus_client before the variable is set.
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
# Simulated time: two days is plenty for a loop's cycles. It bounds the time a
# run takes, not its memory, which grows with the requests (MAX_ARRIVALS).
MAX_HOURS = 48.0
# Every arrival is queued before the run starts and every answer kept for the
# figures: 1e7 take about 2 GB and 40 s a run, and the search for the fewest
# always-on pods runs the load some 9 times more.
MAX_ARRIVALS = 1e7
# The controller's sync period is a flag in seconds, and nothing it reads
# changes faster: the windows and policy periods of `behavior` are whole
# seconds, the metrics move with scrapes seconds apart. A period near 0
# would let no simulated time pass.
MIN_SYNC_PERIOD = 1.0
# Where `inferscale simulate` finds the chart's values in a clone of the repository.
DEFAULT_VALUES = "chart/values.yaml"
# What the API server and helm accept, checked before either is asked: a name
# outside them would only read as "not found" (or, with a "/", as another path).
NAMESPACE_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # an RFC 1123 label
RELEASE_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # helm's
LABEL_VALUE_PATTERN = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
NAMESPACE_MAX, RELEASE_MAX, LABEL_VALUE_MAX = 63, 53, 63

# CLI options override the environment by writing to it, as text, so that
# Settings is their one parser (`--workers 2` and `WORKERS=2` read alike) and
# names the variable in its errors.
SERVE_OPTIONS = {"host": "HOST", "port": "PORT", "admin_port": "ADMIN_PORT", "workers": "WORKERS"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferscale", description=__doc__)
    parser.add_argument("--version", action="version", version=inferscale.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the inference server under gunicorn")
    for option, env in SERVE_OPTIONS.items():
        serve.add_argument(_flag(option), help=f"overrides ${env}")
    doctor = commands.add_parser(
        "doctor",
        help="walk a release's autoscaling pipeline and name the first broken link",
        description="Needs the [doctor] extra (pip install 'inferscale[doctor]') and a kubeconfig. "
        "Exits 0 when every link is healthy, 1 at a broken link, 2 when the cluster cannot be read.",
    )
    _name_option(
        doctor,
        ["--release"],
        (RELEASE_PATTERN, RELEASE_MAX, "a helm release name: lower-case letters, digits, '-' and '.'"),
        "inferscale",
        "the chart's release name",
    )
    _name_option(
        doctor,
        ["-n", "--namespace"],
        (NAMESPACE_PATTERN, NAMESPACE_MAX, "a namespace: lower-case letters, digits and '-'"),
        "default",
        "the release's namespace",
    )
    _name_option(
        doctor,
        ["--chart-name"],
        (LABEL_VALUE_PATTERN, LABEL_VALUE_MAX, "a label value: letters, digits, '-', '_' and '.'"),
        "inferscale",
        "the chart's app.kubernetes.io/name label: the release's nameOverride if it set one",
    )
    doctor.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    doctor.add_argument("--context", help="the kubeconfig context (default: its current one)")
    doctor.add_argument(
        "--request-timeout",
        type=_above_zero,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each answer of the API server, tried once (default: 10)",
    )
    doctor.add_argument("--json", action="store_true", help="print JSON for scripts")
    _add_simulate(commands)
    commands.add_parser("settings", help="print every setting: its variable, default and meaning (Markdown)")
    args = parser.parse_args(argv)
    if args.command == "settings":
        from inferscale.settings import reference_table

        _print_report(reference_table(), end="")
        return 0
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "simulate":
        return _simulate(args)

    flags = {}
    for option, env in SERVE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[env] = value
            flags[env] = _flag(option)
    return _serve(flags)


def _flag(option: str) -> str:
    return f"--{option.replace('_', '-')}"


def _print_report(text: str, end: str = "\n") -> None:
    """A command's output; a reader that has gone (`| head`) is no error of ours."""
    try:
        print(text, end=end, flush=True)
    except BrokenPipeError:
        # Else Python complains once more at exit, flushing into the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _doctor(args: argparse.Namespace) -> int:
    try:
        from inferscale.doctor import kube, pipeline, report
    except ImportError as error:
        print(f"inferscale doctor: {error.name} is missing: pip install 'inferscale[doctor]'", file=sys.stderr)
        return 2
    # As kubectl resolves it: the flag, else $KUBECONFIG (a path list), else ~/.kube/config.
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not _any_exists(kubeconfig):
        # The kubernetes library calls that an invalid file.
        print(f"inferscale doctor: no kubeconfig at {kubeconfig} (--kubeconfig or $KUBECONFIG)", file=sys.stderr)
        return 2
    try:
        cluster = kube.Cluster.from_kubeconfig(kubeconfig, args.context, args.request_timeout, retry=False)
    except Exception as error:  # noqa: BLE001 - kubernetes' config errors have no common base
        print(f"inferscale doctor: cannot load the kubeconfig: {error}", file=sys.stderr)
        return 2
    walk = pipeline.Walk(cluster, args.namespace, args.release, args.chart_name)
    try:
        findings = pipeline.walk_pipeline(walk)
    except OSError as error:
        print(f"inferscale doctor: cannot reach the API server: {error}", file=sys.stderr)
        return 2
    except kube.ApiError as error:
        # Refused (401, 403), throttled (429) or failing (5xx): the pipeline is unknown, not broken.
        print(f"inferscale doctor: {error}", file=sys.stderr)
        return 2
    except kube.UnexpectedAnswer as error:
        print(
            f"inferscale doctor: the kubeconfig's server does not answer as a Kubernetes API server: {error}",
            file=sys.stderr,
        )
        return 2
    render = report.as_json if args.json else report.as_text
    _print_report(render(args.release, args.namespace, findings, walk.budget))
    return 0 if report.healthy(findings) else 1


def _any_exists(paths: str) -> bool:
    """Whether any of the path list is there, `~` expanded as the kubernetes library does (a pipe counts)."""
    return any(os.path.exists(os.path.expanduser(path)) for path in paths.split(os.pathsep) if path)


def _add_simulate(commands) -> None:
    from inferscale.simulation import SCENARIOS

    simulate = commands.add_parser(
        "simulate",
        help="the autoscaling loop in simulation: how fast, how many pods, how many refused",
        description="Runs the chart's values (pods, scrapes, window, HPA behaviour) through a discrete-event model "
        "of the loop, and the same load on the fewest always-on pods that meet the target. "
        "Needs the [simulate] extra (pip install 'inferscale[simulate]').",
    )
    simulate.add_argument(
        "-f",
        "--values",
        action="append",
        metavar="FILE",
        help="a values file; repeat it to lay each over the ones before, as helm -f does: "
        "-f chart/values.yaml -f my-values.yaml (default: chart/values.yaml)",
    )
    simulate.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="step",
        help="step: from idle at 60 s; ramp: over 30 min; spike: 2 min from one pod's load; "
        "sine: one period over the run; stop: load, stopped half-way (default: step)",
    )
    height = simulate.add_mutually_exclusive_group()
    height.add_argument(
        "--times",
        type=_above_zero,
        default=5.0,
        help="the load at its height, in pods' worth: slots / inference seconds each (default: 5)",
    )
    height.add_argument("--rate", type=_above_zero, help="the load at its height in requests/s, instead of --times")
    simulate.add_argument(
        "--arrivals",
        choices=("poisson", "paced"),
        default="poisson",
        help="as the locustfile's LOAD_ARRIVALS poisson or fixed (default: poisson)",
    )
    simulate.add_argument(
        "--hours", type=_above_zero, default=2.0, help=f"simulated time, at most {MAX_HOURS:g} (default: 2)"
    )
    simulate.add_argument(
        "--sync-period",
        type=_sync_period,
        default=15.0,
        help=f"kube-controller-manager's --horizontal-pod-autoscaler-sync-period, s, at least {MIN_SYNC_PERIOD:g} "
        "(default: 15)",
    )
    simulate.add_argument(
        "--max-running-pods",
        type=int,
        default=None,
        help="the most pods the cluster can run at once (its nodes' room for the pod's "
        "requests); the rest of a scale-up stays Pending (default: no bound)",
    )
    simulate.add_argument("--seed", type=int, default=1, help="arrivals, phases and routing (default: 1)")
    simulate.add_argument("--json", action="store_true", help="print JSON for scripts")


def _values_problems(error: ValidationError) -> str:
    """Each value that is wrong, by its path in the file (`server.maxQueue: ...`)."""
    problems = []
    for problem in error.errors(include_url=False):
        path = ".".join(str(part) for part in problem["loc"]) or "the file"
        if problem["type"] == "missing":
            problems.append(f"{path}: missing")
        elif problem["type"] == "value_error":  # our own check's message, which names the value
            problems.append(f"{path}: {problem['ctx']['error']}")
        elif isinstance(problem["input"], dict | list):  # a whole section: its repr would bury the message
            problems.append(f"{path}: {problem['msg']}")
        else:
            problems.append(f"{path}: {problem['msg']} (found {problem['input']!r})")
    message = "; ".join(problems)
    if any(problem["type"] == "missing" for problem in error.errors()):
        # The simulator reads the values as the chart renders them, so an
        # override file that leaves the rest to the chart's defaults lacks some.
        message += f": the first file must be the chart's values.yaml (-f {DEFAULT_VALUES} -f yours.yaml)"
    return message


class UnreadableValues(Exception):
    """A values file that is not a YAML mapping of values, or not there."""


def _values_in(path: str) -> dict:
    import yaml  # _simulate has checked that the extra is installed

    from inferscale.simulation.values_yaml import read_values

    try:
        with open(path) as values_file:
            values = read_values(values_file)
    except (OSError, yaml.YAMLError) as error:
        raise UnreadableValues(f"cannot read chart values from {path}: {error}") from error
    if not isinstance(values, dict):
        found = "nothing" if values is None else f"a {type(values).__name__}"
        raise UnreadableValues(f"cannot read chart values from {path}: it holds {found}, not a mapping of values")
    return values


def _simulate(args: argparse.Namespace) -> int:
    try:
        # Only whether the extra is installed: the modules that use them import them.
        import jsonschema  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as error:
        print(f"inferscale simulate: {error.name} is missing: pip install 'inferscale[simulate]'", file=sys.stderr)
        return 2
    from pydantic import ValidationError

    from inferscale.simulation import report
    from inferscale.simulation.chart_schema import SCHEMA_FILE, UnreadableSchema, schema_beside, schema_problems
    from inferscale.simulation.chart_values import ChartValues, coalesced, merged
    from inferscale.simulation.scenarios import Model, fewest_fixed, run, scenario

    files = args.values or [DEFAULT_VALUES]
    named = " over ".join(reversed(files))
    try:
        chart, *users = (_values_in(path) for path in files)
        values = coalesced(chart, functools.reduce(merged, users, {}))
        schema = schema_beside(files[0])
        refused = schema_problems(values, schema) if schema is not None else []
        if refused:
            print(
                f"inferscale simulate: {named}: the chart's {SCHEMA_FILE} refuses them, as helm install "
                f"would: {'; '.join(refused)}",
                file=sys.stderr,
            )
            return 2
        typed = ChartValues.model_validate(values)
        model = Model.from_chart(typed, sync_period=args.sync_period)
    except ValidationError as error:
        print(f"inferscale simulate: {named}: {_values_problems(error)}", file=sys.stderr)
        return 2
    except (UnreadableValues, UnreadableSchema) as error:
        print(f"inferscale simulate: {error}", file=sys.stderr)
        return 2
    if args.hours > MAX_HOURS:
        print(f"inferscale simulate: --hours {args.hours:g} is over the {MAX_HOURS:g} it simulates", file=sys.stderr)
        return 2
    if args.max_running_pods is not None and args.max_running_pods < model.hpa.min_replicas:
        print(
            f"inferscale simulate: --max-running-pods {args.max_running_pods} is below minReplicas "
            f"{model.hpa.min_replicas}",
            file=sys.stderr,
        )
        return 2
    model = dataclasses.replace(model, max_running_pods=args.max_running_pods)
    _note_unscraped(typed.serviceMonitor)
    _note_offset_fit(typed.server.inferenceDurationSeconds, typed.autoscaling)
    times = args.times if args.rate is None else args.rate / model.pod_capacity
    case = scenario(args.scenario, model.pod_capacity, times, args.hours)
    arrivals = case.shape.peak * case.seconds
    if arrivals > MAX_ARRIVALS:
        height = f"--rate {args.rate:g}" if args.rate else f"--times {args.times:g} ({case.shape.peak:g} req/s)"
        print(
            f"inferscale simulate: {height} over --hours {args.hours:g} is up to {arrivals:.3g} requests, "
            f"over the {MAX_ARRIVALS:g} it simulates",
            file=sys.stderr,
        )
        return 2
    settles_at = max(case.change_at, case.steady_from)
    if case.seconds <= settles_at:
        print(
            f"inferscale simulate: --hours {args.hours:g} ends the {args.scenario} before its load changes and "
            f"settles ({settles_at:g} s in); simulate longer",
            file=sys.stderr,
        )
        return 2
    autoscaled = run(model, case, args.arrivals, args.seed)
    fixed = fewest_fixed(model, case, args.arrivals, args.seed)
    render = report.as_json if args.json else report.as_text
    _print_report(render(model, case, args.arrivals, autoscaled, fixed))
    return 0


def _name_option(
    parser: argparse.ArgumentParser,
    flags: list[str],
    rule: tuple[re.Pattern[str], int, str],
    default: str,
    meaning: str,
) -> None:
    """An option naming a Kubernetes object, checked by `rule` (pattern, longest, what it is)."""
    parser.add_argument(
        *flags, type=functools.partial(_name, *rule), default=default, help=f"{meaning} (default: {default})"
    )


def _name(pattern: re.Pattern[str], longest: int, kind: str, text: str) -> str:
    if len(text) > longest or not pattern.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {kind}, starting and ending with a letter or digit, at most {longest} characters"
        )
    return text


def _number(text: str) -> float:
    # argparse would name the function that raised: "invalid _above_zero value".
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None


def _above_zero(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text!r}")
    return value


def _sync_period(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value >= MIN_SYNC_PERIOD):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least {MIN_SYNC_PERIOD:g} s, not {text!r}")
    return value


def _note_unscraped(service_monitor: ServiceMonitor) -> None:
    """The loop is simulated as scraped either way; without a ServiceMonitor that rests on the user's Prometheus."""
    if not service_monitor.enabled:
        print(
            "inferscale simulate: note: serviceMonitor.enabled is false, so the chart renders no ServiceMonitor; "
            f"this run assumes your Prometheus scrapes the pods every {service_monitor.interval:g}s by a "
            "configuration of its own (without scrapes the HPA has no metric and keeps its count)",
            file=sys.stderr,
        )


# What the chart's 4 s offset makes of its 10 s inference and 12 s target: an
# unqueued pod proposes 0.75 of its count. NOTES.txt warns outside the same band.
FITTING_BARE_READING = 0.75


def _note_offset_fit(inference: float, autoscaling: Autoscaling) -> None:
    """An offset that no longer fits the timings, with the one that does, as the chart's NOTES say."""
    offset, target = autoscaling.durationOffsetSeconds, autoscaling.targetAverageDurationSeconds
    reads = (inference - offset) / (target - offset)
    if offset == 0 or abs(reads - FITTING_BARE_READING) <= 0.05:
        return
    fit = (inference - FITTING_BARE_READING * target) / (1 - FITTING_BARE_READING)
    advice = (
        f"{fit:.3g} s does the same"
        if fit > 0
        else f"0 does best: the bare {inference:g} s reads {inference / target:.2f}"
    )
    print(
        f"inferscale simulate: note: through the {offset:g} s offset a pod answering unqueued ({inference:g} s) "
        f"reads {reads:.2f} of the target, where the chart's 4 s on its 10 s inferences and 12 s target reads "
        f"{FITTING_BARE_READING}; for these timings durationOffsetSeconds = {advice}",
        file=sys.stderr,
    )


def _serve(flags: dict[str, str]) -> int:
    """`flags`: the variables the command line set, and by which option."""
    from pydantic import ValidationError

    from inferscale.settings import Settings, describe

    try:
        settings = Settings()
    except ValidationError as error:
        problems = "".join(f"\n  {line}" for line in describe(error, flags))
        print(f"inferscale: invalid settings:{problems}", file=sys.stderr)
        return 2
    # prometheus_client picks single- or multi-process storage when it is first
    # imported, so the directory must be in the environment before that import.
    os.environ[ENV_VAR] = settings.prometheus_multiproc_dir
    # numpy's OpenBLAS would start a thread per core at import, in the process
    # that forks every other: the model's slots already run in parallel, and
    # its small products gain nothing from more threads. A user's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from inferscale.supervisor import CannotStart, serve

    try:
        return serve(settings)
    except CannotStart as error:
        print(f"inferscale: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
