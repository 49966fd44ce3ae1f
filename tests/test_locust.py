"""locustfile.py driven by the real locust CLI against the real server, on loopback."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from inferscale.settings import V2_NAME_PATTERN, Settings
from localcluster.load import locust_command
from localcluster.processes import ManagedProcess, wait_until
from localcluster.repo import ARRIVAL_LOG_PLUGIN, LOCUSTFILE
from localcluster.servers import LOOPBACK, free_port, scrape

# 4 slots / 0.2 s = 20 requests/s of capacity, 8 queue places.
UNDER_CAPACITY_SERVER = {"INFERENCE_DURATION_SECONDS": "0.2", "MODEL_CONCURRENCY": "4", "MAX_QUEUE": "8"}


def locust_env(**load: str) -> dict[str, str]:
    """The caller's environment without any LOAD_* it may carry, plus `load`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LOAD_", "LOCUST_"))}
    return {**env, **load}


def run_locust_headless(
    host: str, csv_prefix: Path, env: dict[str, str], args: list[str], timeout: float, plugins: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    """`locust --headless` to completion; all it started is killed if it overruns."""
    command = [*locust_command(plugins), "--headless", "--host", host, "--csv", str(csv_prefix), "--only-summary"]
    command += args
    locust = ManagedProcess("locust", command, f"{csv_prefix}.log", env=env, cwd=csv_prefix.parent).start()
    try:
        finished = locust.wait(timeout)
    finally:
        returncode = locust.stop(timeout=0)
    output = locust.log_path.read_text(errors="replace")
    assert finished, f"locust still running after {timeout} s:\n{output}"
    return subprocess.CompletedProcess(command, returncode, output)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def aggregated(csv_prefix: Path) -> dict[str, str]:
    rows = [row for row in read_csv(Path(f"{csv_prefix}_stats.csv")) if row["Name"] == "Aggregated"]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.slow
def test_headless_run_below_capacity_has_no_failures(start_server, tmp_path):
    server = start_server(UNDER_CAPACITY_SERVER, workers=2)
    # 3 users x 1 request/s, Poisson: ~3/s against 20/s of capacity.
    result = run_locust_headless(
        server.url,
        tmp_path / "run",
        locust_env(LOAD_USER_RPS="1"),
        ["-u", "3", "-r", "3", "-t", "15s"],
        timeout=60,
    )
    assert result.returncode == 0, result.stdout
    total = aggregated(tmp_path / "run")
    # ~45 expected; the CSV lags the end of the run by up to a second.
    assert int(total["Request Count"]) >= 25, result.stdout
    assert int(total["Failure Count"]) == 0, result.stdout
    routes = {row["Name"] for row in read_csv(tmp_path / "run_stats.csv")} - {"Aggregated"}
    # Stats group by route, not by URL: exactly one row per route.
    assert routes == {"/predict", "/v2/models/inferscale/infer"}, routes
    # Below capacity nothing queues: every answer takes about one inference.
    assert 200 <= float(total["Average Response Time"]) < 400, total


@pytest.mark.slow
def test_step_shape_adds_users_step_by_step(start_server, tmp_path):
    server = start_server(UNDER_CAPACITY_SERVER, workers=2)
    env = locust_env(
        LOAD_SHAPE="step",
        LOAD_STEP_USERS="1",
        LOAD_USERS="3",
        LOAD_STEP_SECONDS="4",
        LOAD_DURATION_SECONDS="14",
        LOAD_USER_RPS="1",
    )
    # No -t: the shape ends the run (LOAD_DURATION_SECONDS).
    started = time.monotonic()
    result = run_locust_headless(server.url, tmp_path / "step", env, [], timeout=60)
    assert result.returncode == 0, result.stdout
    assert time.monotonic() - started < 30, "the shape did not end the run"
    history = [row for row in read_csv(tmp_path / "step_stats_history.csv") if row["Name"] == "Aggregated"]
    counts = [int(row["User Count"]) for row in history if int(row["User Count"])]
    # 1 user, then 2, then 3, never fewer than before.
    assert sorted(set(counts)) == [1, 2, 3], counts
    assert counts == sorted(counts), counts
    assert int(aggregated(tmp_path / "step")["Failure Count"]) == 0, result.stdout


def final_stats(json_file: Path) -> dict[str, dict]:
    """locust's exact end-of-run stats by name (the CSV can lag the end by a second)."""
    return {entry["name"]: entry for entry in json.loads(json_file.read_text())}


@pytest.mark.slow
def test_rejections_are_failures_unless_told_otherwise(start_server, tmp_path):
    # One slot, no queue: each burst of 4 gets one answer and three immediate 503s.
    server = start_server({"INFERENCE_DURATION_SECONDS": "0.5", "MODEL_CONCURRENCY": "1", "MAX_QUEUE": "0"}, workers=1)
    load = {"LOAD_ARRIVALS": "fixed", "LOAD_BURST": "4", "LOAD_USER_RPS": "0.5", "LOAD_V2_WEIGHT": "0"}
    for mode in ("failure", "ok"):
        result = run_locust_headless(
            server.url,
            tmp_path / mode,
            locust_env(**load, LOAD_REJECTED=mode),
            ["-u", "1", "-r", "1", "-t", "5s", "--json-file", str(tmp_path / mode)],
            timeout=60,
        )
        stats = final_stats(tmp_path / f"{mode}.json")  # locust appends .json
        if mode == "failure":
            assert result.returncode == 1, result.stdout  # locust's exit code when anything failed
            route = stats["/predict"]
            served, rejected = route["num_requests"] - route["num_failures"], route["num_failures"]
            errors = read_csv(tmp_path / "failure_failures.csv")
            assert {row["Name"] for row in errors} == {"/predict"}, errors
            assert "rejected: queue full (503, Retry-After 1)" in errors[0]["Error"], errors
        else:
            assert result.returncode == 0, result.stdout
            assert stats["/predict"]["num_failures"] == 0, stats
            served, rejected = stats["/predict"]["num_requests"], stats["/predict (rejected)"]["num_requests"]
            # Separate rows keep the route's response times those of served requests.
            route = stats["/predict"]
            assert route["total_response_time"] / route["num_requests"] >= 500, route
        # 1-3 bursts in 5 s; the run's end may cut off the last burst's served request.
        assert served >= 1 and rejected % 3 == 0 and rejected // 3 in (served, served + 1), (served, rejected)


@pytest.mark.slow
def test_only_a_full_pods_503_is_a_rejection_on_either_route(start_server, tmp_path):
    """A draining pod answers 503 too, and no autoscaler prevents that: it
    stays a failure under LOAD_REJECTED=ok, on both routes, while a full
    pod's 503 is listed apart as rejected."""
    one_slot = {"MODEL_CONCURRENCY": "1", "MAX_QUEUE": "0"}
    full = start_server({**one_slot, "INFERENCE_DURATION_SECONDS": "0.5"}, workers=1)
    slow = {"INFERENCE_DURATION_SECONDS": "8", "GRACEFUL_SHUTDOWN_SECONDS": "30"}
    draining = start_server({**one_slot, **slow}, workers=1)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(draining.predict)  # keeps the drain going through the run
        wait_until(lambda: scrape(draining.admin_url)["inference_in_flight_requests"] == 1, "the slot taken", 10)
        draining.terminate()
        wait_until(lambda: requests.get(draining.admin_url + "/ready", timeout=2).status_code == 503, "draining", 10)
        for name, server in (("draining", draining), ("full", full)):
            run_locust_headless(
                server.url,
                tmp_path / name,
                locust_env(LOAD_ARRIVALS="fixed", LOAD_BURST="4", LOAD_USER_RPS="1", LOAD_REJECTED="ok"),
                ["-u", "2", "-r", "2", "-t", "3s", "--json-file", str(tmp_path / name)],
                timeout=60,
            )
        assert held.result().status_code == 200
    routes = ("/predict", "/v2/models/inferscale/infer")
    drained, filled = final_stats(tmp_path / "draining.json"), final_stats(tmp_path / "full.json")
    for route in routes:
        assert drained[route]["num_requests"] == drained[route]["num_failures"] > 0, drained
        assert f"{route} (rejected)" not in drained, drained
        # The other route may have held the one slot at every arrival: no served row, then.
        assert filled.get(route, {}).get("num_failures", 0) == 0, filled
        assert filled[f"{route} (rejected)"]["num_requests"] > 0, filled
    errors = read_csv(tmp_path / "draining_failures.csv")
    assert {row["Name"] for row in errors} == set(routes), errors
    assert all("503" in row["Error"] for row in errors), errors


@pytest.mark.slow
def test_arrival_log_has_every_request_sent_and_no_dropped_arrival(start_server, tmp_path):
    # One slot, no queue, at most 2 in flight per user: of each burst of 4, one
    # request is served, one refused (503) and two never leave the client.
    server = start_server({"INFERENCE_DURATION_SECONDS": "0.5", "MODEL_CONCURRENCY": "1", "MAX_QUEUE": "0"}, workers=1)
    load = {"LOAD_ARRIVALS": "fixed", "LOAD_BURST": "4", "LOAD_USER_RPS": "0.5", "LOAD_V2_WEIGHT": "0"}
    log = tmp_path / "arrivals.txt"
    env = locust_env(**load, LOAD_MAX_OUTSTANDING="2", ARRIVAL_LOG=str(log))
    began = time.time()
    run_locust_headless(
        server.url,
        tmp_path / "run",
        env,
        ["-u", "1", "-r", "1", "-t", "5s", "--json-file", str(tmp_path / "run")],
        timeout=60,
        plugins=(ARRIVAL_LOG_PLUGIN,),
    )
    ended = time.time()
    stats = final_stats(tmp_path / "run.json")
    dropped = [entry for name, entry in stats.items() if name.startswith("arrival dropped")]
    assert dropped and dropped[0]["num_requests"] >= 2, stats
    lines = [line.split() for line in log.read_text().splitlines()]
    sent, statuses = [float(start) for start, _ in lines], [int(status) for _, status in lines]
    assert len(sent) == stats["/predict"]["num_requests"] >= 2, (sent, stats)
    # The refused ones are arrivals too, each logged with its 503.
    assert statuses.count(503) == stats["/predict"]["num_failures"] >= 1, (statuses, stats)
    assert statuses.count(200) == len(sent) - statuses.count(503) >= 1, statuses
    assert all(began <= t <= ended for t in sent), (began, sent, ended)


def ui_template_args(url: str, timeout: float = 30.0) -> dict:
    """GET / until it answers 200; the settings locust's web UI renders from."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = requests.get(url + "/", timeout=2)
            if response.status_code == 200:
                match = re.search(r"templateArgs = (\{.*\})", response.text)
                assert match, response.text[:2000]
                return json.loads(match.group(1))
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"locust web UI not answering 200 on {url}/ within {timeout} s")
        time.sleep(0.2)


def run_briefly_with(tmp_path: Path, variable: str, value: str) -> subprocess.CompletedProcess:
    """Two seconds of one user against a closed port, with one LOAD_* setting."""
    command = [*locust_command(), "--headless", "--host", f"http://{LOOPBACK}:9", "-u", "1", "-t", "2s"]
    env = locust_env(**{variable: value})
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "variable, value, refusal",
    [
        ("LOAD_USER_RPS", "nan", "must be a finite number >= 0.001"),
        ("LOAD_USER_RPS", "inf", "must be a finite number >= 0.001"),
        ("LOAD_DURATION_SECONDS", "nan", "must be a finite number >= 0.0"),
        ("LOAD_BURST", "0", "must be a finite number >= 1"),
        ("LOAD_FEATURES", "65537", "must be a finite number >= 1 and <= 65536"),
        ("LOAD_MODEL_NAME", "team/model", "is not a model name a server can serve"),
    ],
)
def test_nonsense_load_settings_are_refused_by_name(tmp_path, variable, value, refusal):
    """NaN passed every `<` check: a user with LOAD_USER_RPS=nan never waited and spun a core."""
    result = run_briefly_with(tmp_path, variable, value)
    assert result.returncode != 0
    assert f"{variable}={value!r} {refusal}" in result.stderr, result.stderr


@pytest.mark.parametrize("variable, value", [("LOAD_FEATURES", "65536"), ("LOAD_MODEL_NAME", "m.v2-a_b")])
def test_load_settings_at_their_limits_are_taken(tmp_path, variable, value):
    result = run_briefly_with(tmp_path, variable, value)
    assert variable not in result.stderr, result.stderr


def test_the_model_names_and_feature_counts_the_load_accepts_are_the_ones_a_server_accepts():
    locustfile = LOCUSTFILE.read_text()
    assert f'r"{V2_NAME_PATTERN}"' in locustfile
    [most_features] = [bound.le for bound in Settings.model_fields["max_features"].metadata if hasattr(bound, "le")]
    assert f'"LOAD_FEATURES", 8, minimum=1, kind=int, maximum={most_features})' in locustfile


@pytest.mark.parametrize("shape, user_fields_shown", [("", True), ("steady", False)], ids=["no-shape", "steady-shape"])
def test_web_ui_answers_and_lets_the_user_pick_users_without_a_shape(tmp_path, shape, user_fields_shown):
    port = free_port()
    locust = ManagedProcess(
        "locust web UI",
        [*locust_command(), "--host", f"http://{LOOPBACK}:9", "--web-host", LOOPBACK, "--web-port", str(port)],
        tmp_path / "locust-ui.log",
        env=locust_env(LOAD_SHAPE=shape) if shape else locust_env(),
        cwd=tmp_path,
        stop_timeout=15,
    ).start()
    try:
        args = ui_template_args(f"http://{LOOPBACK}:{port}")
        assert set(args["available_user_classes"]) == {"PredictUser", "V2InferUser"}, args
        # hide_common_options: the UI hides its user count and spawn rate inputs
        # because a shape class drives the users.
        assert (not args["hide_common_options"]) is user_fields_shown, args
        assert args["state"] == "ready", args  # nothing sent until the user presses start
    finally:
        # SIGTERM, as a terminal's user or a container runtime stops it: locust exits 0.
        returncode = locust.stop()
    assert returncode == 0, locust.log_tail()
