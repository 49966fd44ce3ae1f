"""inferscale against KServe's Python model server: throughput, CPU per request, scrapes under load, idle memory.

Each server in turn, on a free loopback port: start it, wait until it is ready,
send a few V2 infer requests and sum the PSS of its process tree, then run wrk
(a warm-up, then the measured run) on POST /v2/models/inferscale/infer with
0 s inference while a real Prometheus scrapes its /metrics every 100 ms and
records each scrape's duration. Run as root with tcpdump installed, the
scrapes of inferscale's admin port are also timed on the wire
(bench/wire_timing.py): the server's part of each, without Prometheus's own
waits. KServe 0.21.0 runs from its own venv in the
cache, installed on first use; its model is bench/kserve_model.py, the same
arithmetic as inferscale's.

This machine's speed drifts by tens of percent from one minute to the next,
so the servers take turns over several rounds (the order flips every round)
and the ratios are per round, with their median; CPU time per request of each
server's process tree is printed beside req/s, as the measure of work. Prints
numbers; exits non-zero on errors (including non-2xx answers and failed
scrapes), never on a ratio.

With --model-in-workers another server takes its turn each round: the same
app with the model inside each HTTP worker (bench/model_in_workers.py), with
gunicorn's C parser (gunicorn_h1c, built into the cache on first use) and no
access log: the most generous ceiling of a Flask app on gunicorn here. With
--without-access-log, the shipped server with ACCESS_LOG=false takes a turn too.

    python bench/vs_kserve.py [--rounds 3] [--seconds 20] [--connections 8] [--model-in-workers]
                              [--without-access-log] [--skip-install]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import requests
from wire_timing import WireTimer

from localcluster.loopback import LOOPBACK, free_port
from localcluster.processes import ManagedProcess, wait_until
from localcluster.prometheus_process import Prometheus
from localcluster.servers import process_tree

ROOT = Path(__file__).resolve().parent.parent

# The server's settings for this benchmark; adapt here when settings.py changes.
# MODEL_MEMORY_MB=0: the KServe model allocates no ballast, so PSS compares the
# servers and not inferscale's simulated weights. PROMETHEUS_MULTIPROC_DIR is
# added per run (a fresh directory).
INFERSCALE_ENV = {
    "INFERENCE_DURATION_SECONDS": "0",
    "MODEL_LOAD_SECONDS": "0",
    "MODEL_MEMORY_MB": "0",
    "WORKERS": "2",
    "LOG_LEVEL": "warning",
    # Pinned: an ACCESS_LOG=false in the caller's shell would silence the baseline.
    "ACCESS_LOG": "true",
}

# bench/model_in_workers.py, with --model-in-workers.
IN_WORKERS = "model in workers"
# inferscale with ACCESS_LOG=false, with --without-access-log.
QUIET = "no access log"
# The servers run with ACCESS_LOG=false.
SILENT = {IN_WORKERS, QUIET}
# The process name of inferscale's HTTP workers (both its servers and the ceiling).
HTTP_WORKER = "http-worker"

KSERVE_VERSION = "0.21.0"
CACHE_DIR = Path(os.environ.get("INFERSCALE_CACHE") or Path.home() / ".cache" / "inferscale")
KSERVE_VENV = CACHE_DIR / "bench" / "kserve-venv"
# gunicorn's C HTTP parser for the model-in-workers ceiling, on that server's
# PYTHONPATH only: built from its source distribution, so it needs a C compiler.
# gunicorn 27's `fast` extra asks for 0.6.14 or later; 0.6.10 is the newest
# that PyPI serves here (gunicorn mends what it knows of the older ones).
H1C_VERSION = "0.6.10"
H1C_DIR = CACHE_DIR / "bench" / f"gunicorn-h1c-{H1C_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"

MODEL = "inferscale"
INFER_PATH = f"/v2/models/{MODEL}/infer"
INFER_BODY = json.dumps({"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
# Prometheus's scrape interval, and its timeout: a scrape slower than this fails.
SCRAPE_INTERVAL = "100ms"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IDLE_REQUESTS = 10
SPREAD_LOOK_DELAY = 0.5
# Both servers' access logs (gunicorn's and uvicorn's) quote the request line, then the status.
ACCESS_STATUS = re.compile(r'"POST \S+ HTTP/1\.1" (\d{3})')

# wrk has no flag for a request body; its summary's errors.status counts
# answers with status > 399 (what "non-2xx" means for servers that never redirect).
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""
WRK_FIELDS = ("requests", "duration_us", "p50_us", "p99_us", "non_2xx", "connect", "read", "write", "timeout")


@dataclass
class Server:
    """A server under test: its process (stopping it reaches every worker), the
    port wrk sends to, and where it answers ready and serves its metrics."""

    name: str
    process: ManagedProcess
    port: int
    ready_path: str
    metrics_path: str
    # Where probes and scrapes go, when not the port that serves inference.
    admin_port: int | None = None

    def __post_init__(self) -> None:
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.admin_url = f"http://{LOOPBACK}:{self.admin_port or self.port}"

    def start(self) -> None:
        self.process.start()
        wait_until(self._ready, f"{self.name} {self.ready_path} == 200", START_TIMEOUT, process=self.process)

    def _ready(self) -> bool:
        return requests.get(self.admin_url + self.ready_path, timeout=1).status_code == 200

    def stop(self) -> None:
        self.process.stop()

    @property
    def pids(self) -> list[int]:
        """The server's process and every process below it."""
        return process_tree(self.process.pid)


@dataclass
class Result:
    name: str
    round: int
    answer: list[float]
    pss_mib: float
    pss_by_process: list[tuple[int, float]]
    wrk: dict[str, float]
    cpu_by_name: dict[str, float]  # CPU seconds in the measured run, per process name
    scrape_ms: list[float]
    # The same scrapes timed on the wire: the server's part alone (empty: not captured).
    server_scrape_ms: list[float]
    scrape_failures: int
    spread: list[int]
    statuses: Counter

    @property
    def requests_per_second(self) -> float:
        return self.wrk["requests"] / (self.wrk["duration_us"] / 1e6)

    @property
    def cpu_us_per_request(self) -> float:
        return sum(self.cpu_by_name.values()) / self.wrk["requests"] * 1e6

    @property
    def socket_errors(self) -> int:
        return int(sum(self.wrk[key] for key in ("connect", "read", "write", "timeout")))


# ---- the servers ------------------------------------------------------------


def inferscale_server(work: Path, name: str = "inferscale", settings: dict[str, str] | None = None) -> Server:
    port, admin_port = free_port(), free_port()
    slug = name.replace(" ", "-")
    env = {
        **os.environ,
        **INFERSCALE_ENV,
        **(settings or {}),
        "PROMETHEUS_MULTIPROC_DIR": str(work / f"{slug}-metrics"),
    }
    command = [
        str(Path(sys.executable).parent / "inferscale"),
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
    ]
    # Probes and scrapes on the admin port, as the chart's probes and ServiceMonitor do.
    process = ManagedProcess(name, command, work / f"{slug}.log", env=env, stop_timeout=STOP_TIMEOUT)
    return Server(name, process, port, "/ready", "/metrics", admin_port)


def model_in_workers_server(work: Path, h1c_dir: Path) -> Server:
    """The ceiling of bench/model_in_workers.py: the model in each HTTP worker,
    gunicorn's C parser, no access log; probes and scrapes on its one port."""
    port = free_port()
    env = {
        **os.environ,
        **INFERSCALE_ENV,
        "PROMETHEUS_MULTIPROC_DIR": str(work / "in-workers-metrics"),
        "ACCESS_LOG": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(h1c_dir), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, str(ROOT / "bench" / "model_in_workers.py"), str(port)]
    process = ManagedProcess(IN_WORKERS, command, work / "in-workers.log", env=env, stop_timeout=STOP_TIMEOUT)
    return Server(IN_WORKERS, process, port, "/ready", "/metrics")


def kserve_server(work: Path, python: Path, workers: int) -> Server:
    port = free_port()
    # KServe's default registry is per process; a multiprocess directory left
    # in the caller's environment would change what its /metrics serves.
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    command = [
        str(python),
        str(ROOT / "bench" / "kserve_model.py"),
        "--http_port",
        str(port),
        "--workers",
        str(workers),
        "--enable_grpc",
        "false",
    ]
    name = f"KServe {workers}-worker"
    # KServe 0.21 serves prometheus_client's default registry on /metrics of its HTTP port.
    process = ManagedProcess(name, command, work / f"kserve-{workers}.log", env=env, stop_timeout=STOP_TIMEOUT)
    return Server(name, process, port, f"/v2/models/{MODEL}/ready", "/metrics")


def kserve_python(skip_install: bool) -> Path:
    """The KServe venv's python; created and filled on first use, never the project's venv."""
    python = KSERVE_VENV / "bin" / "python"
    if installed_kserve(python) == KSERVE_VERSION:
        return python
    if skip_install:
        raise SystemExit(f"kserve {KSERVE_VERSION} is not installed in {KSERVE_VENV} (--skip-install)")
    print(f"# installing kserve=={KSERVE_VERSION} into {KSERVE_VENV} (about a minute)", flush=True)
    # python3 from PATH, not this venv's interpreter: the KServe venv must not
    # depend on the project's venv, which `make clean` removes.
    subprocess.run(["python3", "-m", "venv", str(KSERVE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"kserve=={KSERVE_VERSION}"], check=True)
    if installed_kserve(python) != KSERVE_VERSION:
        raise SystemExit(f"kserve {KSERVE_VERSION} did not install into {KSERVE_VENV}")
    return python


def gunicorn_c_parser(skip_install: bool) -> Path:
    """The directory holding gunicorn_h1c; installed on first use, never into the project's venv."""
    if installed_h1c() == H1C_VERSION:
        return H1C_DIR
    if skip_install:
        raise SystemExit(f"gunicorn_h1c {H1C_VERSION} is not installed in {H1C_DIR} (--skip-install)")
    print(f"# building gunicorn_h1c=={H1C_VERSION} into {H1C_DIR}", flush=True)
    shutil.rmtree(H1C_DIR, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(H1C_DIR)]
    subprocess.run([*command, f"gunicorn_h1c=={H1C_VERSION}"], check=True)
    if installed_h1c() != H1C_VERSION:
        raise SystemExit(f"gunicorn_h1c {H1C_VERSION} did not install into {H1C_DIR}")
    return H1C_DIR


def installed_h1c() -> str | None:
    """The version this interpreter imports from H1C_DIR, once its compiled module loads."""
    script = "import importlib.metadata as m, gunicorn_h1c; print(m.version('gunicorn_h1c'))"
    answer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(H1C_DIR)}
    )
    return answer.stdout.strip() if answer.returncode == 0 else None


def installed_kserve(python: Path) -> str | None:
    if not python.exists():
        return None
    answer = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('kserve'))"],
        capture_output=True,
        text=True,
    )
    return answer.stdout.strip() if answer.returncode == 0 else None


# ---- what is measured -------------------------------------------------------


def infer_once(server: Server) -> list[float]:
    response = requests.post(
        server.url + INFER_PATH, data=INFER_BODY, headers={"Content-Type": "application/json"}, timeout=10
    )
    response.raise_for_status()
    return response.json()["outputs"][0]["data"]


def pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss line for pid {pid}")


def start_wrk(server: Server, script: Path, args, seconds: float) -> subprocess.Popen:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "-s",
        str(script),
        server.url + INFER_PATH,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WRK_BODY": INFER_BODY},
    )


def wrk_result(wrk: subprocess.Popen, seconds: float) -> dict[str, float]:
    stdout, stderr = wrk.communicate(timeout=seconds + 60)
    match = re.search(r"^WRK_RESULT (.+)$", stdout, re.MULTILINE)
    if wrk.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{stdout}\n{stderr}")
    return dict(zip(WRK_FIELDS, map(float, match.group(1).split()), strict=True))


class Scraper:
    """A real Prometheus scraping one server's /metrics, as the chart's ServiceMonitor makes it do.

    Prometheus times every scrape itself (`scrape_duration_seconds`), on the
    keep-alive connection it holds to the target, and a scrape slower than
    SCRAPE_INTERVAL fails (`up` 0).
    """

    JOB = "server"

    def __init__(self, work: Path, server: Server):
        self._prometheus = Prometheus(work / f"prometheus-{server.name.replace(' ', '-')}", free_port())
        target = server.admin_url.removeprefix("http://")
        self._prometheus.write_config(
            SCRAPE_INTERVAL,
            [
                {
                    "job_name": self.JOB,
                    "scrape_timeout": SCRAPE_INTERVAL,
                    "metrics_path": server.metrics_path,
                    "static_configs": [{"targets": [target]}],
                }
            ],
            [],
        )

    def __enter__(self) -> Scraper:
        self._prometheus.start()
        return self

    def __exit__(self, *exc) -> None:
        self._prometheus.stop()

    def last(self, seconds: float) -> tuple[list[float], int]:
        """Scrape durations (ms) of the last `seconds`, and how many scrapes failed then."""
        window = f"[{round(seconds * 1000)}ms]"
        durations = self._samples(f'scrape_duration_seconds{{job="{self.JOB}"}}{window}')
        up = self._samples(f'up{{job="{self.JOB}"}}{window}')
        # Both series get one sample per scrape, stamped with the scrape's start.
        failed = sum(1 for value in up.values() if value == 0)
        return [durations[at] * 1000 for at, value in up.items() if value == 1 and at in durations], failed

    def _samples(self, selector: str) -> dict[float, float]:
        answer = requests.get(self._prometheus.url + "/api/v1/query", params={"query": selector}, timeout=10)
        answer.raise_for_status()
        series = answer.json()["data"]["result"]
        return {at: float(value) for at, value in series[0]["values"]} if series else {}


def cpu_seconds(pids: list[int]) -> Counter:
    """User and system CPU time used so far by these processes, all their threads included,
    per process name: inferscale names its processes by their part (http-worker, model-process)."""
    totals: Counter = Counter()
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        totals[name] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return totals


def connections_per_process(server: Server) -> list[int]:
    """Established connections to the server's port, per process that holds any, most first.

    The workers share one listening socket and the kernel gives each new
    connection to whichever worker accepts first; wrk keeps its connections
    for the whole run, so an uneven split moves req/s and can overflow one
    worker's queue while the other idles.
    """
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].split(":")[1], 16) == server.port:  # 01 = ESTABLISHED
            established.add(f"socket:[{fields[9]}]")
    counts = [len(open_files(pid) & established) for pid in server.pids]
    return sorted((count for count in counts if count), reverse=True)


def open_files(pid: int) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.add(os.readlink(fd))
        except FileNotFoundError:  # closed while we looked
            pass
    return links


def wire_timer(server: Server, work: Path) -> contextlib.AbstractContextManager[WireTimer | None]:
    """A capture of the scrapes when they have a port of their own (inferscale's admin port).

    On a port that wrk also loads, the capture would hold every request of the
    run and cost the CPU being measured, so there is none.
    """
    if server.admin_port is None or WireTimer.unavailable():
        return contextlib.nullcontext()
    return WireTimer(work / f"scrapes-{server.name.replace(' ', '-')}.pcap", server.admin_port)


def measure(server: Server, round_number: int, work: Path, script: Path, args) -> Result:
    try:
        server.start()
        answer = infer_once(server)
        for _ in range(IDLE_REQUESTS - 1):
            infer_once(server)
        pids = server.pids
        by_process = [(pid, pss_mib(pid)) for pid in pids]
        with Scraper(work, server) as scraper, wire_timer(server, work) as wire:
            wrk_result(start_wrk(server, script, args, args.warmup), args.warmup)
            cpu_before = cpu_seconds(pids)
            measured_from = time.time()
            wrk = start_wrk(server, script, args, args.seconds)
            # wrk connects at once and keeps its connections, so one early look tells their split.
            time.sleep(SPREAD_LOOK_DELAY)
            spread = connections_per_process(server)
            wrk_numbers = wrk_result(wrk, args.seconds)
            cpu_after = cpu_seconds(pids)
            cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
            scrape_ms, scrape_failures = scraper.last(args.seconds)
            server_scrape_ms = wire.server_ms(measured_from) if wire else []
    finally:
        server.stop()
    statuses = Counter(ACCESS_STATUS.findall(server.process.log_path.read_text(errors="replace")))
    return Result(
        server.name,
        round_number,
        answer,
        sum(pss for _, pss in by_process),
        by_process,
        wrk_numbers,
        cpu,
        scrape_ms,
        server_scrape_ms,
        scrape_failures,
        spread,
        statuses,
    )


# ---- report -----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def print_table(results: list[Result]) -> None:
    print(f"\n{'':<25}{'wrk':-^40}{'server CPU':>12}  {'scrape ms (Prometheus)':-^30}  {'(server)':-^16}")
    print(
        f"{'round  server':<25}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'conns':>8}{'us/req':>12}"
        f"  {'n':>6}{'p50':>8}{'p99':>8}{'max':>8}  {'p50':>8}{'max':>8}{'idle PSS MiB':>14}"
    )
    for r in results:
        m = r.scrape_ms or [float("nan")]
        wire = r.server_scrape_ms or [float("nan")]
        print(
            f"{r.round:>5}  {r.name:<18}{r.requests_per_second:>8.0f}{r.wrk['p50_us'] / 1000:>8.2f}"
            f"{r.wrk['p99_us'] / 1000:>8.2f}{r.wrk['non_2xx']:>8.0f}{'+'.join(map(str, r.spread)):>8}"
            f"{r.cpu_us_per_request:>12.0f}"
            f"  {len(r.scrape_ms):>6}{statistics.median(m):>8.1f}{percentile(m, 99):>8.1f}{max(m):>8.1f}"
            f"  {statistics.median(wire):>8.1f}{max(wire):>8.1f}{r.pss_mib:>14.1f}"
        )
    print("(conns: how wrk's connections were split over the worker processes)")
    print(
        "(server: from the scrape's last packet in to its answer's last packet out, on the wire: the server's part"
        " of Prometheus's time; nan where not captured: " + (WireTimer.unavailable() or "a port wrk also loads") + ")"
    )
    print("\nidle PSS per process, MiB (the main process first), first round:")
    for r in results:
        if r.round == 1:
            print(f"  {r.name:<18}" + "  ".join(f"{pid}:{pss:.1f}" for pid, pss in r.pss_by_process))
    print("\nserver CPU per request by process name, us (where the work is):")
    for r in results:
        parts = sorted(r.cpu_by_name.items(), key=lambda part: -part[1])
        shares = "  ".join(f"{name} {seconds / r.wrk['requests'] * 1e6:.0f}" for name, seconds in parts if seconds)
        print(f"  {r.round}  {r.name:<18}{shares}")


def print_ratios(results: list[Result], ours: str, theirs: str) -> None:
    """Per round (the two ran minutes apart at most), then the median over rounds."""
    pairs = [
        (
            next(r for r in results if r.round == n and r.name == ours),
            next(r for r in results if r.round == n and r.name == theirs),
        )
        for n in sorted({r.round for r in results})
    ]
    rows = {
        "req/s": [a.requests_per_second / b.requests_per_second for a, b in pairs],
        "CPU per request": [a.cpu_us_per_request / b.cpu_us_per_request for a, b in pairs],
        "HTTP workers' CPU": [
            a.cpu_by_name[HTTP_WORKER] / a.wrk["requests"] / (b.cpu_by_name[HTTP_WORKER] / b.wrk["requests"])
            for a, b in pairs
            if a.cpu_by_name.get(HTTP_WORKER) and b.cpu_by_name.get(HTTP_WORKER)
        ],
        "scrape max": [max(a.scrape_ms) / max(b.scrape_ms) for a, b in pairs if a.scrape_ms and b.scrape_ms],
        "idle PSS": [a.pss_mib / b.pss_mib for a, b in pairs],
    }
    print(f"\n{ours} / {theirs}, per round, and the median:")
    for label, ratios in rows.items():
        if not ratios:
            continue
        print(
            f"  {label:<17}"
            + "".join(f"  x{ratio:.2f}" for ratio in ratios)
            + f"   median x{statistics.median(ratios):.2f}"
        )


def errors_of(results: list[Result]) -> list[str]:
    errors = []
    # Different answers would mean the servers did different work.
    if any(r.answer != results[0].answer for r in results):
        errors.append("the servers disagree: " + ", ".join(f"{r.name} {r.answer}" for r in results))
    for r in results:
        if r.wrk["non_2xx"]:
            seen = f"its access log's statuses, warm-up included: {dict(r.statuses)}" if r.statuses else "no access log"
            errors.append(f"{r.name}: {r.wrk['non_2xx']:.0f} non-2xx answers of {r.wrk['requests']:.0f} ({seen})")
        if r.name in SILENT and r.statuses:
            errors.append(f"{r.name}: wrote access lines, with ACCESS_LOG=false")
        if r.socket_errors:
            errors.append(f"{r.name}: {r.socket_errors} socket errors (connect/read/write/timeout)")
        if r.scrape_failures:
            errors.append(
                f"{r.name} round {r.round}: {r.scrape_failures} scrapes failed (slower than "
                f"{SCRAPE_INTERVAL} or refused)"
            )
    return errors


def exit_status(results: list[Result]) -> int:
    """Print every error of the runs; 1 if there was any (never for a figure)."""
    errors = errors_of(results)
    for error in errors:
        print(f"\n!!! ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="turns each server takes")
    parser.add_argument("--seconds", type=float, default=20, help="measured wrk run per server")
    parser.add_argument("--warmup", type=float, default=3, help="wrk run before it, not measured")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument(
        "--model-in-workers",
        action="store_true",
        help="also run bench/model_in_workers.py, the ceiling of a Flask app on gunicorn: the model in each HTTP "
        "worker, gunicorn's C parser, no access log",
    )
    parser.add_argument(
        "--without-access-log",
        action="store_true",
        help="also run inferscale with ACCESS_LOG=false, to price the access log",
    )
    parser.add_argument(
        "--skip-install",
        "--skip-kserve-install",
        action="store_true",
        help=f"use {KSERVE_VENV} (and {H1C_DIR}) as they are; fail if kserve {KSERVE_VERSION} (or gunicorn_h1c) "
        "is missing",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: bash ci/tools.sh wrk")
    python = kserve_python(args.skip_install)
    h1c_dir = gunicorn_c_parser(args.skip_install) if args.model_in_workers else None

    with tempfile.TemporaryDirectory(prefix="vs-kserve-") as tmp:
        script = Path(tmp) / "v2_infer.lua"
        script.write_text(WRK_SCRIPT)
        print(
            f"# {args.rounds} rounds of wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s "
            f"after a {args.warmup:g} s warm-up, POST {INFER_PATH}; {os.cpu_count()} cores, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )
        results = []
        for round_number in range(1, args.rounds + 1):
            work = Path(tmp) / f"round-{round_number}"
            work.mkdir()
            servers = [inferscale_server(work)]
            if args.without_access_log:
                # Beside the shipped server: the two are compared, and the machine drifts.
                servers.append(inferscale_server(work, QUIET, {"ACCESS_LOG": "false"}))
            servers.append(kserve_server(work, python, 2))
            if h1c_dir:
                servers.append(model_in_workers_server(work, h1c_dir))
            for server in servers if round_number % 2 else reversed(servers):
                results.append(measure(server, round_number, work, script, args))
                print(
                    f"# round {round_number}: {server.name} done, {results[-1].requests_per_second:.0f} req/s, "
                    f"load average {os.getloadavg()[0]:.2f}",
                    flush=True,
                )

    print_table(results)
    print_ratios(results, "inferscale", "KServe 2-worker")
    if args.model_in_workers:
        print_ratios(results, IN_WORKERS, "inferscale")
        print_ratios(results, IN_WORKERS, "KServe 2-worker")
    if args.without_access_log:
        print_ratios(results, QUIET, "inferscale")
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())
