"""The `inferscale` command."""

from __future__ import annotations

import argparse
import os
import sys

import inferscale

# CLI options override the environment by writing to it: gunicorn workers,
# which build their own Settings after fork, then see the same values.
SERVE_OPTIONS = {
    "host": ("HOST", str),
    "port": ("PORT", int),
    "workers": ("WORKERS", int),
    "threads": ("THREADS", int),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferscale", description=__doc__)
    parser.add_argument("--version", action="version", version=inferscale.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the inference server under gunicorn")
    for option, (env, kind) in SERVE_OPTIONS.items():
        serve.add_argument(f"--{option}", type=kind, help=f"overrides ${env}")
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
        Settings()
    except ValidationError as error:
        print(f"inferscale: invalid settings:\n{error}", file=sys.stderr)
        return 2
    from inferscale.server import GunicornServer

    GunicornServer().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
