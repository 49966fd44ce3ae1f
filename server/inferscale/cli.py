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
    args = parser.parse_args(argv)

    for option, (env, _) in SERVE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[env] = str(value)
    return _serve()


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
