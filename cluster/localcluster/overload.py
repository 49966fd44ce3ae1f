"""Open-loop overload of a real server, and what its processes hold while it lasts.

Arrivals come on a fixed schedule whatever the answers, as they do from many
independent callers: an overloaded server cannot slow its own load down.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .servers import ServerProcess, process_name, process_tree


@dataclass
class Answers:
    """Latency in seconds per status code (0: the connection failed)."""

    by_status: dict[int, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.by_status.setdefault(status, []).append(seconds)

    def take(self) -> dict[int, list[float]]:
        with self.lock:
            taken, self.by_status = self.by_status, {}
        return taken


class OpenLoad:
    """`rate` /predict calls per second from `callers` threads with kept-alive connections."""

    def __init__(self, url: str, rate: float, callers: int):
        self.url, self.rate = url, rate
        self.answers = Answers()
        self._tickets: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._schedule, daemon=True)] + [
            threading.Thread(target=self._call, daemon=True) for _ in range(callers)
        ]

    def __enter__(self) -> OpenLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    @property
    def backlog(self) -> int:
        """Arrivals not yet sent: more than a few means the callers, not the server, are short."""
        return self._tickets.qsize()

    def _schedule(self) -> None:
        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            for _ in range(due - sent):
                self._tickets.put(None)
            sent = due
            time.sleep(min(0.01, 1 / self.rate))

    def _call(self) -> None:
        with requests.Session() as session:
            self._call_with(session)

    def _call_with(self, session: requests.Session) -> None:
        while not self._stop.is_set():
            try:
                self._tickets.get(timeout=0.1)
            except queue.Empty:
                continue
            started = time.perf_counter()
            try:
                status = session.post(self.url + "/predict", json={"features": [1.0, 2.0]}, timeout=120).status_code
            except requests.RequestException:
                status = 0
            self.answers.add(status, time.perf_counter() - started)


@dataclass(frozen=True)
class ProcessUse:
    """Resident memory (KiB), open descriptors and threads, per process of the server."""

    rss_kib: dict[int, int]
    # The heap and stacks, where a leak lives. The rest of RSS is shared library
    # pages read in the first time a code path runs: about 3 MiB per worker that
    # arrive in whichever round first takes a rare path.
    anon_kib: dict[int, int]
    fds: dict[int, int]
    threads: dict[int, int]
    names: dict[int, str]

    @classmethod
    def of(cls, server: ServerProcess) -> ProcessUse:
        pids = process_tree(server.process.pid)
        rss: dict[int, int] = {}
        anon: dict[int, int] = {}
        fds: dict[int, int] = {}
        threads: dict[int, int] = {}
        names: dict[int, str] = {}
        for pid in pids:
            try:
                status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
                rss[pid] = int(status["VmRSS"].split()[0])
                anon[pid] = int(status["RssAnon"].split()[0])
                threads[pid] = int(status["Threads"])
                fds[pid] = len(os.listdir(f"/proc/{pid}/fd"))
                names[pid] = process_name(pid)
            except (FileNotFoundError, ProcessLookupError, KeyError):
                continue  # exited between listing and reading
        return cls(rss, anon, fds, threads, names)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
