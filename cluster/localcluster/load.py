"""The load the tests and benchmarks offer a stack: locust, headless, with the
project's locustfile, every user started within the first second."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .repo import LOCUSTFILE


def headless_locust(host: str, users: int, seconds: float, *options: str, plugins: Sequence[Path] = ()) -> list[str]:
    """The command line for `users` users against `host` for `seconds`; `options` are more of
    locust's flags, `plugins` more files locust loads beside the locustfile (event listeners)."""
    spawn = ["-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s"]
    files = ",".join(str(path) for path in (LOCUSTFILE, *plugins))
    return [sys.executable, "-m", "locust", "-f", files, "--headless", "--host", host, *spawn, *options]
