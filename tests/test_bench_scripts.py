"""Every benchmark script still starts. They are run by hand, so nothing else
would notice one broken by a change elsewhere (an import, a renamed option)."""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from localcluster.hpa import HpaSample
from localcluster.loopback import LOOPBACK

BENCH = Path(__file__).resolve().parent.parent / "bench"
# Not scripts: KServe's side of vs_kserve.py (runs in KServe's own venv),
# metrics_under_load.py's baseline app (imported by gunicorn) and
# calibrate.py's locust plugin (loaded by locust; tests/test_locust.py runs it)
# and vs_kserve.py's timing on the wire (tested below).
HELPERS = {"kserve_model.py", "naive_app.py", "arrival_log.py", "wire_timing.py"}
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if path.name not in HELPERS)


def test_the_helpers_still_exist():
    assert HELPERS <= {path.name for path in BENCH.glob("*.py")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports_and_parses_its_options(script):
    result = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location("bench_" + name.removesuffix(".py"), BENCH / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tune_counts_each_goal_by_seed_and_reports_the_median():
    tune = load_script("tune.py")
    knobs = tune.Knobs(12.0, 10.0, 40.0, 300, 0.7)
    meets_all = tune.SeedRun(
        back=120.0, refused=0.3, steady={2: 5, 5: 11}, fixed={2: 4, 5: 9}, changes=1.0, back_to_min=450.0
    )
    # Never back under the target, 6 pods for 4 at 2x, 3 changes an hour: only goal 4.
    misses = tune.SeedRun(
        back=None, refused=0.3, steady={2: 6, 5: 11}, fixed={2: 4, 5: 9}, changes=3.0, back_to_min=450.0
    )
    assert meets_all.goals() == (True, True, True, True)
    assert misses.goals() == (False, False, False, True)
    line = tune.row(knobs, "poisson", [meets_all, misses, meets_all])
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[4] == "0.1 / 0.1"  # the controller's tolerance both ways, as no knob widens it
    assert cells[6] == "120 (120–never)"  # the median seed, and the range over seeds
    assert cells[8] == "5 / 4" and cells[9] == "11 / 9"
    assert cells[10] == "1.0 (1.0–3.0)"
    assert cells[-1] == "2 / 2 / 2 / 3"


def test_a_pinned_count_is_kept_by_readings_over_its_share_of_the_target():
    tune = load_script("tune.py")
    # 4 pods keep 4 on a reading over 3/4 of the target: at 12 s (9 s) every
    # reading but those with a pod that finished nothing in the window (it
    # reads 0, so the average is 7.5 s); at 40 s (30 s) none, as 2x never
    # queues that long.
    keeping, held = tune.readings_that_keep_a_pod((12.0, "paced", 1.0, 1, 4))
    assert 0.5 < keeping < 1 and held == 1.0
    assert tune.readings_that_keep_a_pod((40.0, "paced", 1.0, 1, 4)) == (0.0, 0.0)


def test_a_scale_up_step_replaces_the_charts_policies_and_labels_its_row():
    tune = load_script("tune.py")
    charts = tune.BARE_DEFAULTS.applied(tune.chart_model()).hpa.scale_up.policies
    stepped = tune.replace(tune.BARE_DEFAULTS, scale_up_step=tune.percent_or_pods(200, 6, 30))
    policies = stepped.applied(tune.chart_model()).hpa.scale_up.policies
    assert [(p.kind, p.value, p.period_seconds) for p in policies] == [("Percent", 200, 30), ("Pods", 6, 30)]
    assert policies != charts
    assert stepped.label().endswith("| 200 % or 6 pods per 30 s")
    assert "pods per" not in tune.BARE_DEFAULTS.label()


def test_the_sweeps_start_from_one_pod_at_rest_and_the_sixth_turns_the_pods_at_rest_and_the_queue():
    tune = load_script("tune.py")
    charts = tune.BARE_DEFAULTS.applied(tune.chart_model())
    assert charts.hpa.min_replicas == 1  # the five sweeps' base, whatever the chart's default
    assert (
        tune.Model.from_chart_values(
            tune.read_values((tune.ROOT / "chart" / "values.yaml").read_text())
        ).hpa.min_replicas
        == 2
    )
    at_rest = tune.replace(tune.BARE_DEFAULTS, min_replicas=3, max_queue=12)
    model = at_rest.applied(tune.chart_model())
    assert (model.hpa.min_replicas, model.pod.max_queue) == (3, 12)
    assert (model.hpa.target, model.timing) == (charts.hpa.target, charts.timing)
    assert at_rest.label().endswith("| 3 | 12")
    assert at_rest.extra_headers() == ["minReplicas", "maxQueue"]
    assert tune.BARE_DEFAULTS.extra_headers() == []


def test_the_seventh_sweep_holds_the_target_13_timing_as_a_row_and_the_bare_defaults_elsewhere(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    tune = load_script("tune.py")
    calibrate = load_script("calibrate.py")
    title, band, seeds = tune.all_sweeps(range(1, 6), range(1, 31))[6]
    assert seeds == range(1, 31) and "13 s target" in title
    rows = [knobs.applied(tune.chart_model()).hpa for knobs in band]
    assert calibrate.model_of("target-13").hpa in rows
    assert {(hpa.target, hpa.min_replicas) for hpa in rows} == {(13.0, 2)}
    # What the sweeps turn is the chart's values until 2026-12-07, calibrate's offset-0 timing.
    swept, bare = tune.BARE_DEFAULTS.applied(tune.chart_model()).hpa, calibrate.model_of("offset-0").hpa
    assert (swept.target, swept.held_target, swept.tolerances, swept.duration_offset) == (
        bare.target,
        bare.held_target,
        bare.tolerances,
        bare.duration_offset,
    )


def test_the_eighth_sweep_reads_the_charts_target_through_each_offset_with_the_sixths_chart_row_as_control(
    monkeypatch,
):
    monkeypatch.syspath_prepend(str(BENCH))
    tune = load_script("tune.py")
    calibrate = load_script("calibrate.py")
    *_, (title, rows, seeds) = tune.all_sweeps(range(1, 6), range(1, 31))
    assert seeds == range(1, 31) and "offset" in title
    hpas = [knobs.applied(tune.chart_model()).hpa for knobs in rows]
    assert {(hpa.target, hpa.min_replicas) for hpa in hpas} == {(12.0, 2)}
    assert {hpa.duration_offset for hpa in hpas} == {0.0, 4.0, 5.0, 6.0}
    charts_row = tune.replace(tune.BARE_DEFAULTS, min_replicas=2).applied(tune.chart_model()).hpa
    assert charts_row in hpas
    shifted = tune.replace(tune.BARE_DEFAULTS, duration_offset=4.0)
    assert shifted.label().endswith("| 4 s") and shifted.extra_headers() == ["duration offset"]
    assert tune.BARE_DEFAULTS.applied(tune.chart_model()).hpa.duration_offset == 0.0
    # The real loop's run of the best row is that row, through the chart's own values.
    best = calibrate.model_of("offset-4").hpa
    assert best in hpas and (best.duration_offset, best.tolerances.up, best.held_target) == (4.0, 0.4, 1.5)


def test_a_step_that_never_pushes_the_average_over_the_target_meets_goal_1s_time():
    tune = load_script("tune.py")
    never_over = SimpleNamespace(never_over_target=True, back_under_target_seconds=None)
    stayed_over = SimpleNamespace(never_over_target=False, back_under_target_seconds=None)
    came_back = SimpleNamespace(never_over_target=False, back_under_target_seconds=131.0)
    assert [tune.back_under_target(f) for f in (never_over, stayed_over, came_back)] == [0.0, None, 131.0]


# ---- bench/wire_timing.py ------------------------------------------------------

SERVER_DELAY = 0.05
# The client's own waits: between a request's headers and its body, and before
# reading an answer that is already on the wire.
CLIENT_PAUSE = 1.0
# A scrape's size; an answer larger than the client's receive window would
# wait for the client to read, and that wait would be on the wire.
BODY_BYTES = 10_000


class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus scrapes

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(SERVER_DELAY)
        body = b"x" * BODY_BYTES
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # the headers go out in a packet of their own
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_wire_timing_leaves_out_the_clients_pauses_before_the_body_and_before_reading(slow_server, tmp_path):
    """A server's part of a request, from a real tcpdump capture (root): from
    the request's last packet to its answer's last, on a kept-alive connection."""
    wire_timing = load_script("wire_timing.py")
    reason = wire_timing.WireTimer.unavailable()
    if reason:
        pytest.fail(f"{reason}; bash ci/tools.sh tcpdump, and run as root")
    client_ms = []
    with wire_timing.WireTimer(tmp_path / "capture.pcap", slow_server) as wire:
        since = time.time()
        connection = http.client.HTTPConnection(LOOPBACK, slow_server, timeout=10)
        for _ in range(2):  # the second on the same connection
            started = time.monotonic()
            connection.putrequest("POST", "/")
            connection.putheader("Content-Length", "4")
            connection.endheaders()  # the headers, in a packet of their own
            time.sleep(CLIENT_PAUSE)
            connection.send(b"body")
            time.sleep(CLIENT_PAUSE)
            response = connection.getresponse()
            assert len(response.read()) == BODY_BYTES
            client_ms.append((time.monotonic() - started) * 1000)
        connection.close()
        server_ms = wire.server_ms(since)
    assert len(server_ms) == 2
    assert all(ms >= 2 * CLIENT_PAUSE * 1000 for ms in client_ms)
    for ms in server_ms:
        assert SERVER_DELAY * 1000 <= ms < CLIENT_PAUSE * 1000
    assert wire.server_ms(time.time()) == []


def saved_run(path: Path, changes: list[tuple[float, int]], users: int = 5, ready=None) -> Path:
    """A run as calibrate.py saves it: the HPA read every 10 s for 300 s, replicas changing at `changes`,
    and the Deployment's Ready count at `ready`'s (the runs before offset-0-second-run.json have none)."""
    observed = []
    for at in range(0, 300, 10):
        replicas = [r for t, r in changes if t <= at][-1]
        observed.append({"at": float(at), "replicas": replicas, "value": None, "second": None})
        if ready:
            observed[-1]["ready"] = [r for t, r in ready if t <= at][-1]
    run = {"times": 5.0, "users": users, "user_rps": 0.2, "up": 200.0, "schedulable": 15, "observed": observed}
    path.write_text(json.dumps(run))
    return path


def test_calibrate_judges_saved_runs_against_each_other(tmp_path):
    one = saved_run(tmp_path / "one.json", [(0, 1), (20, 4), (50, 12), (250, 1)])
    other = saved_run(tmp_path / "other.json", [(0, 1), (40, 6), (50, 16), (250, 1)])
    command = [
        *(sys.executable, str(BENCH / "calibrate.py"), "--timing", "min-replicas-1"),
        *("--among", str(one), str(other)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("one.json", "other.json"))}
    # Of the 30 readings, 0-10 s (1 and 1) and 250-290 s agree; 20-30 s (4 and 1), 40 s (4 and 6) and
    # 50-240 s (12 and 16) do not: 7 of 30 either way.
    assert "23 %, 20 s / 40 s" in rows["one.json"]
    assert "23 %, 40 s / 20 s" in rows["other.json"]
    assert "pairs that would count as calibrated: 0 of 2" in result.stdout

    unlike = saved_run(tmp_path / "unlike.json", [(0, 1)], users=10)
    result = subprocess.run([*command, str(unlike)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--among compares runs of one load" in result.stderr and "unlike.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_calibrate_ranks_saved_runs_among_the_replays_of_their_arrivals(tmp_path):
    # One request every 20 s: the two pods at rest hold it, so every seed stays at 2.
    arrivals = [float(t) for t in range(0, 200, 20)]
    runs = {
        "high.json": saved_run(tmp_path / "high.json", [(0, 2), (20, 20), (250, 2)]),
        "low.json": saved_run(tmp_path / "low.json", [(0, 2)]),
        "unrecorded.json": saved_run(tmp_path / "unrecorded.json", [(0, 2)]),
    }
    for name in ("high.json", "low.json"):
        run = json.loads(runs[name].read_text())
        runs[name].write_text(json.dumps({**run, "arrivals": arrivals, "refused": []}))
    command = [sys.executable, str(BENCH / "calibrate.py"), "--timing", "chart", "--seeds", "3", "--ranks"]
    result = subprocess.run([*command, *map(str, runs.values())], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = {line.split(",")[0]: line for line in result.stdout.splitlines() if not line.startswith("#")}
    assert lines["high.json"] == (
        "high.json, chart timing: peak 20 against 2..2, median 2 (mid-rank 1.00); "
        "steady from 100 to 200 s 20 against 2..2, median 2 (mid-rank 1.00); "
        "refused in the first 600 s, % 0 against 0..0, median 0 (mid-rank 0.50)"
    )
    assert lines["low.json"].startswith(
        "low.json, chart timing: peak 2 against 2..2, median 2 (mid-rank 0.50); steady from 100"
    )
    assert lines["unrecorded.json"] == "unrecorded.json, chart timing: skipped, no arrivals recorded with this run"
    assert "mean mid-rank: peak 0.75 over 2 runs, steady 0.75 over 2 runs, refused 0.50 over 2 runs" in result.stdout

    # A run saved with its timing is ranked in that timing only.
    run = json.loads(runs["low.json"].read_text())
    runs["low.json"].write_text(json.dumps({**run, "timing": "target-13"}))
    result = subprocess.run([*command, str(runs["low.json"])], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "measured in the target-13 timing, not chart" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([*command, f"target-13={runs['low.json']}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "low.json, target-13 timing: peak 2 against 2..2, median 2 (mid-rank 0.50)" in result.stdout

    # Five pods' worth for 200 s: every seed adds pods, each Ready 8-10 s after it is asked for (a 3 s start,
    # the 5 s model load, then the next of the 2 s startup probes); these took 60 s.
    slow = saved_run(tmp_path / "slow.json", [(0, 2), (20, 6), (250, 2)], ready=[(0, 2), (80, 6)])
    slow.write_text(json.dumps({**json.loads(slow.read_text()), "arrivals": [t / 5 for t in range(1000)]}))
    result = subprocess.run([*command, str(slow)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    waits = re.search(
        r"added pods' median wait for Ready, s 60 against ([\d.]+)\.\.([\d.]+), median ([\d.]+) \(mid-rank 1\.00\)",
        result.stdout,
    )
    assert waits, result.stdout
    low, high, median = map(float, waits.groups())
    assert 8 <= low <= median <= high <= 10
    assert "ready 1.00 over 1 runs" in result.stdout


def test_the_chart_timing_is_the_charts_defaults_and_the_saved_runs_keep_their_pods_at_rest(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # calibrate.py imports autoscale.py beside it, as a script does
    calibrate = load_script("calibrate.py")
    chart = calibrate.Model.from_chart_values(
        calibrate.read_values((BENCH.parent / "chart" / "values.yaml").read_text())
    )
    measured = calibrate.model_of("chart")
    assert (measured.hpa, measured.timing, measured.pod) == (chart.hpa, chart.timing, chart.pod)
    # The eighth sweep's bold row, pinned as it was measured; the chart's since 2026-12-07.
    assert calibrate.model_of("offset-4") == measured
    # Every timing measured before then read the bare duration with the HPA's own band up.
    for timing in ("fast", "duration-only", "utilization-0.7", "min-replicas-1", "scale-up-per-30s", "offset-0"):
        hpa = calibrate.model_of(timing).hpa
        assert (hpa.duration_offset, hpa.tolerances.up) == (0.0, 0.1), timing
    band = calibrate.model_of("target-13").hpa
    assert (band.min_replicas, band.target, band.held_target, band.tolerances.up) == (2, 13.0, 1.2, 0.75)
    for timing in (
        "fast",
        "duration-only",
        "utilization-0.7",
        "min-replicas-1",
        "scale-up-per-30s",
        "scale-up-tolerance",
    ):
        assert calibrate.model_of(timing).hpa.min_replicas == 1, timing


def test_calibrate_reads_the_arrival_log_as_the_plugin_writes_it(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    calibrate = load_script("calibrate.py")
    log = "1000.5 200\n1001.25 503\n\n1000.0 0\n1002.0 503\n1003.0\n"
    arrivals, refused = calibrate.read_arrival_log(log, step_wall=1000.0)
    assert arrivals == [0.0, 0.5, 1.25, 2.0, 3.0]
    assert refused == [1.25, 2.0]


def replayed(tmp_path: Path, run: dict) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    command = [sys.executable, str(BENCH / "calibrate.py"), "--timing", "chart", "--replot", "--run", str(path)]
    command += ["--seeds", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert path.with_suffix(".png").stat().st_size > 0
    return result.stdout


def test_calibrate_counts_refusals_and_steady_replicas_beside_the_simulators(tmp_path):
    run = json.loads(saved_run(tmp_path / "base.json", [(0, 2), (20, 4), (250, 2)]).read_text())
    # One request a second for 200 s, then one at 700 s; 503s at 5, 6 and 700 s: the last is past the window.
    run["arrivals"] = [float(t) for t in range(200)] + [700.0]
    run["refused"] = [5.0, 6.0, 700.0]
    out = replayed(tmp_path, run)
    assert "refused in the 600 s after the step: measured 1.00 % (2 of 200), simulated " in out, out
    # The load's second half, 100-200 s, read 4 replicas throughout; the baseline is 5x a pod's load.
    steady = re.search(
        r"steady replicas from 100 to 200 s \(median\): measured 4, .*fewest fixed for this load: "
        r"(\d+(?:\.5)?) .*measured / fewest fixed ([\d.]+)x",
        out,
    )
    assert steady, out
    fixed = float(steady.group(1))
    assert 5 < fixed <= 20  # 5 pods' worth: 5 pods would be busy all the time, and queue without end
    assert steady.group(2) == f"{4 / fixed:.2f}"
    # The count goal 2 judges comes from hours of the same load, which a run of minutes cannot show.
    held = re.search(r"the same load held 4 h .*: steady over the last 2 h (\d+(?:\.5)?) .*, ([\d.]+)x the fewest", out)
    assert held, out
    assert 5 < float(held.group(1)) <= 20 and held.group(2) == f"{float(held.group(1)) / fixed:.2f}"
    assert "added pods' wait for Ready: not recorded with this run" in out
    del run["refused"]
    assert "refused in the 600 s after the step: measured not recorded with this run, simulated " in replayed(
        tmp_path, run
    )
    # Asked for 4 at 20 s; the third pod Ready at 40 s, the fourth at 50 s.
    run = json.loads(
        saved_run(tmp_path / "base.json", [(0, 2), (20, 4), (250, 2)], ready=[(0, 2), (40, 3), (50, 4)]).read_text()
    )
    out = replayed(tmp_path, run)
    assert re.search(
        r"wait for Ready, .*: measured median 25 s, longest 30 s over 2 pods; simulated median \d+ s, longest \d+ s",
        out,
    ), out


# ---- bench/autoscale.py's figures, from hand-made readings ---------------------------


def locust_run(returncode: int = 0, stdout: str = " Aggregated   694   14(2.02%) ") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], returncode, stdout=stdout, stderr="")


def loop_readings(metric, replicas, ready, desired, end: int = 720):
    """The loop read every second, each figure a function of the second."""
    autoscale = load_script("autoscale.py")
    return [autoscale.Reading(float(t), replicas(t), ready(t), desired(t), metric(t)) for t in range(end)]


def step_readings(metric, end: int = 720):
    """Decided at 15 s; the Deployment at 2 from 16 s, 14 from 91 s; the first new pod Ready at 40 s."""
    return loop_readings(
        metric,
        replicas=lambda t: 1 if t < 16 else (2 if t < 91 else 14),
        ready=lambda t: 1 if t < 40 else 2,
        desired=lambda t: 1 if t < 15 else 14,
        end=end,
    )


def summary(readings, load_seconds: float = 720, window: float = 420, locust=None, min_replicas: int = 1):
    autoscale = load_script("autoscale.py")
    run = autoscale.Run(load_seconds, 180, 12.0, window, min_replicas, 0.0)
    return autoscale.summarize("x", readings, run, locust or locust_run())


def test_an_hpa_read_through_an_offset_is_read_back_as_the_duration(monkeypatch):
    """What the HPA shows through autoscaling.durationOffsetSeconds (the average
    less it, -offset at rest) is judged against the duration target as the duration."""
    monkeypatch.syspath_prepend(str(BENCH))
    autoscale = load_script("autoscale.py")
    deployment = {"spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    samples = [HpaSample(1.0, 3, 4, 8.5), HpaSample(2.0, 3, 3, -4.0), HpaSample(3.0, 3, 3, None)]
    readings = autoscale.paired_readings([(sample, deployment) for sample in samples], 4.0)
    assert [(r.at, r.replicas, r.ready, r.desired, r.metric) for r in readings] == [
        (1.0, 3, 2, 4, 12.5),
        (2.0, 3, 2, 3, 0.0),
        (3.0, 3, 2, 3, None),
    ]


def test_autoscale_reads_the_pods_created_and_ready_from_the_deployment():
    result = summary(step_readings(lambda t: 30.0 if 10 <= t <= 60 else 9.0))
    assert result["first scale-up decision"] == 15.0
    assert result["replicas first above minReplicas (pod created)"] == 16.0
    assert result["first added pod Ready"] == 40.0
    assert result["peak replicas"] == 14 and result["peak reached"] == 91.0
    assert result["requests (failed)"] == "694 (14(2.02%))"


def test_autoscale_counts_a_scale_up_from_the_pods_at_rest_not_from_one():
    # Two pods at rest from the start: decided at 20 s, the third pod created at 21 s and Ready at 45 s.
    readings = loop_readings(
        lambda t: 30.0 if 10 <= t <= 60 else 9.0,
        replicas=lambda t: 2 if t < 21 else 6,
        ready=lambda t: 2 if t < 45 else 3,
        desired=lambda t: 2 if t < 20 else 6,
    )
    result = summary(readings, min_replicas=2)
    assert result["first scale-up decision"] == 20.0
    assert result["replicas first above minReplicas (pod created)"] == 21.0
    assert result["first added pod Ready"] == 45.0
    assert result["peak replicas"] == 6 and result["peak reached"] == 21.0


def test_autoscale_counts_back_under_target_as_the_simulator_does():
    # Over from 10 s to 60 s, under from 61 s: back at 61 s, though 14 pods come only at 91 s.
    assert summary(step_readings(lambda t: 30.0 if 10 <= t <= 60 else 9.0))["latency back under target"] == "61 s"
    # One dip to 11 s at 120 s amid 20 s readings from 106 s to 300 s is not back.
    dipping = step_readings(lambda t: 11.0 if t == 120 else (20.0 if 106 <= t <= 300 else 9.0))
    assert summary(dipping)["latency back under target"] == "301 s"
    assert summary(step_readings(lambda t: 9.0))["latency back under target"] == "never over"


def test_autoscale_takes_steady_replicas_after_the_scale_down_window_never_the_peak():
    # 14 at the peak (91 s), down to 6 once the 420 s window has passed.
    readings = loop_readings(
        lambda t: 9.0,
        replicas=lambda t: 1 if t < 16 else (14 if t < 520 else 6),
        ready=lambda t: 1,
        desired=lambda t: 14,
        end=900,
    )
    result = summary(readings, load_seconds=900)
    assert result["steady replicas (median)"] == "6 (from 436 s)"
    assert result["replica changes while steady"] == 1
    # 720 s of load leave 284 s after the window, enough; 600 s do not.
    short = summary(readings, load_seconds=600)
    assert short["steady replicas (median)"] == "not reached: hold the load >= 616 s"
    assert short["replica changes while steady"] == short["steady replicas (median)"]


@pytest.mark.parametrize(
    "locust",
    [locust_run(returncode=2), locust_run(stdout=""), locust_run(returncode=127, stdout="")],
    ids=["crashed", "no summary", "missing"],
)
def test_autoscale_refuses_a_run_whose_locust_failed(locust):
    with pytest.raises(RuntimeError, match="locust failed"):
        summary(step_readings(lambda t: 9.0), locust=locust)


# ---- bench/placement.py and bench/metrics_under_load.py ----------------------------

HELD_BEFORE_ADMISSION = 0.3  # a wait the server's queue_seconds cannot see: in a worker, on the socket


class HeldAnswer(http.server.BaseHTTPRequestHandler):
    """A /predict whose answer reports no queue wait, though it was held before admission."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(HELD_BEFORE_ADMISSION)
        body = json.dumps({"queue_seconds": 0.0, "inference_seconds": 0.05}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_placement_sees_a_wait_before_admission_from_the_client():
    placement = load_script("placement.py")
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), HeldAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait = placement.timed_predict(placement.requests.Session(), f"http://{LOOPBACK}:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert wait.server == 0.0
    assert HELD_BEFORE_ADMISSION - 0.05 <= wait.client < HELD_BEFORE_ADMISSION + 1
    assert placement.waited([0.0, 0.002, wait.client]).startswith("1 of 3 (p50 2.00 ms")


def test_metrics_under_load_calls_the_tail_of_few_samples_the_max(capsys):
    metrics = load_script("metrics_under_load.py")
    metrics.report({"server": "naive", "samples": 4, "p50": 7.980, "tail": 8.027})
    metrics.report({"server": "inferscale", "samples": 473, "p50": 0.0117, "tail": 0.0251})
    naive, ours = capsys.readouterr().out.splitlines()
    assert "n=4" in naive and "max=   8027.0 ms" in naive and "p99" not in naive
    assert "n=473" in ours and "p99=" in ours
