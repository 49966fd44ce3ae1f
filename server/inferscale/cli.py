"""The `inferscale` command."""

from __future__ import annotations

import argparse
import os
import sys

import inferscale

# Spelled out, not imported from inferscale.multiprocess: importing that would
# import prometheus_client before the variable is set.
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

# CLI options override the environment by writing to it, so that Settings has
# one source and names the variable in its errors.
SERVE_OPTIONS = {
    "host": ("HOST", str),
    "port": ("PORT", int),
    "admin_port": ("ADMIN_PORT", int),
    "workers": ("WORKERS", int),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferscale", description=__doc__)
    parser.add_argument("--version", action="version", version=inferscale.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the inference server under gunicorn")
    for option, (env, kind) in SERVE_OPTIONS.items():
        serve.add_argument(f"--{option.replace('_', '-')}", type=kind, help=f"overrides ${env}")
    doctor = commands.add_parser(
        "doctor", help="walk a release's autoscaling pipeline and name the first broken link",
        description="Needs the [doctor] extra (pip install 'inferscale[doctor]') and a kubeconfig. "
                    "Exits 0 when every link is healthy, 1 at a broken link, 2 when the cluster cannot be read.")
    doctor.add_argument("--release", default="inferscale", help="the chart's release name (default: inferscale)")
    doctor.add_argument("-n", "--namespace", default="default", help="the release's namespace (default: default)")
    doctor.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    doctor.add_argument("--context", help="the kubeconfig context (default: its current one)")
    doctor.add_argument("--json", action="store_true", help="print JSON for scripts")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return _doctor(args)

    for option, (env, _) in SERVE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[env] = str(value)
    return _serve()


def _doctor(args: argparse.Namespace) -> int:
    try:
        from inferscale.doctor import kube, pipeline, report
    except ImportError as error:
        print(f"inferscale doctor: {error.name} is missing: pip install 'inferscale[doctor]'", file=sys.stderr)
        return 2
    try:
        cluster = kube.Cluster.from_kubeconfig(args.kubeconfig, args.context)
    except Exception as error:  # noqa: BLE001 - kubernetes' config errors have no common base
        print(f"inferscale doctor: cannot load the kubeconfig: {error}", file=sys.stderr)
        return 2
    walk = pipeline.Walk(cluster, args.namespace, args.release)
    try:
        findings = pipeline.walk_pipeline(walk)
    except OSError as error:
        print(f"inferscale doctor: cannot reach the API server: {error}", file=sys.stderr)
        return 2
    render = report.as_json if args.json else report.as_text
    print(render(args.release, args.namespace, findings, walk.budget))
    return 0 if report.healthy(findings) else 1


def _serve() -> int:
    from pydantic import ValidationError

    from inferscale.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        print(f"inferscale: invalid settings:\n{error}", file=sys.stderr)
        return 2
    # prometheus_client picks single- or multi-process storage when it is first
    # imported, so the directory must be in the environment before that import.
    os.environ[ENV_VAR] = settings.prometheus_multiproc_dir
    # numpy's OpenBLAS would start a thread per core at import, in the process
    # that forks every other: the model's slots already run in parallel, and
    # its small products gain nothing from more threads. A user's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from inferscale.supervisor import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
