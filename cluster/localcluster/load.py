"""The load the tests and benchmarks offer a stack: locust, headless, with the
project's locustfile, every user started within the first second."""

from __future__ import annotations

import sys

from .repo import LOCUSTFILE


def headless_locust(host: str, users: int, seconds: float, *options: str) -> list[str]:
    """The command line for `users` users against `host` for `seconds`; `options` are more of locust's flags."""
    spawn = ["-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s"]
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host, *spawn, *options]
