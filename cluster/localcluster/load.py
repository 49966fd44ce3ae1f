"""The load the tests and benchmarks offer a stack: locust, headless, with the
project's locustfile, every user started within the first second."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .repo import LOCUSTFILE


def locust_command(plugins: Sequence[Path] = ()) -> list[str]:
    """locust with the project's locustfile, and `plugins` (event listeners) loaded beside it."""
    return [sys.executable, "-m", "locust", "-f", ",".join(str(path) for path in (LOCUSTFILE, *plugins))]


def headless_locust(host: str, users: int, seconds: float, *options: str, plugins: Sequence[Path] = ()) -> list[str]:
    """The command line for `users` users against `host` for `seconds`; `options` are more of
    locust's flags, `plugins` as for `locust_command`."""
    spawn = ["-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s"]
    return [*locust_command(plugins), "--headless", "--host", host, *spawn, *options]
