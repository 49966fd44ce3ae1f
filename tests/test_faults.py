"""Processes of the pod killed with SIGKILL under load: what callers and the metrics see."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from localcluster.servers import client_connections, scrape

SUCCESS = 'inference_requests_total{status="success"}'
ERROR = 'inference_requests_total{status="error"}'
COUNTERS = (
    SUCCESS,
    ERROR,
    'inference_requests_total{status="rejected"}',
    "inference_request_duration_seconds_count",
    "inference_queue_wait_seconds_count",
    "inference_duration_seconds_count",
)


def call(url: str) -> requests.Response | Exception:
    """One request on its own connection; the exception if the connection broke."""
    try:
        return requests.post(url + "/predict", json={"features": [1.0]}, timeout=60)
    except requests.ConnectionError as error:
        return error


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
    return result


def assert_monotonic(before: dict[str, float], after: dict[str, float]) -> None:
    for name in COUNTERS:
        assert after[name] >= before[name], f"{name} went backwards: {before[name]} -> {after[name]}"


def test_killing_an_http_worker_loses_only_its_own_connections(start_server):
    server = start_server({"INFERENCE_DURATION_SECONDS": "2", "MODEL_CONCURRENCY": "4", "MAX_QUEUE": "4"}, workers=2)
    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(call, server.url) for _ in range(8)]
        wait_for(lambda: scrape(server.admin_url)["inference_queue_depth"] == 4)
        before = scrape(server.admin_url)
        held = {pid: client_connections(pid, server.port) for pid in server.worker_pids()}
        victim = max(held, key=held.get)
        os.kill(victim, signal.SIGKILL)
        results = [future.result() for future in pending]
    broken = [r for r in results if isinstance(r, Exception)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(broken) == held[victim] >= 1, (held, results)
    assert [r.status_code for r in answered] == [200] * len(answered)
    # gunicorn replaces the worker; the model never noticed.
    wait_for(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids())
    after = scrape(server.admin_url)
    assert_monotonic(before, after)
    assert after[SUCCESS] == len(answered) and after["inference_model_ready"] == 1
    # The dead worker's running requests finished on the model and freed their slots.
    wait_for(lambda: scrape(server.admin_url)["inference_in_flight_requests"] == 0)
    assert server.predict().status_code == 200


def test_a_killed_workers_queued_requests_give_their_places_back(start_server):
    """Queued work of a dead worker has no one to answer: run, it would hold
    the pod's slots and queue for nobody, ahead of the live requests."""
    server = start_server({"INFERENCE_DURATION_SECONDS": "2", "MODEL_CONCURRENCY": "1", "MAX_QUEUE": "6"}, workers=2)
    with ThreadPoolExecutor(7) as pool:
        pending = [pool.submit(call, server.url) for _ in range(7)]
        wait_for(lambda: scrape(server.admin_url)["inference_queue_depth"] == 6)
        held = {pid: client_connections(pid, server.port) for pid in server.worker_pids()}
        victim = max(held, key=held.get)
        live = len(pending) - held[victim]
        os.kill(victim, signal.SIGKILL)
        # At once, not an inference (2 s) per dead request later.
        wait_for(lambda: scrape(server.admin_url)["inference_queue_depth"] <= live, timeout=1.5)
        results = [future.result() for future in pending]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(answered) == live and all(r.status_code == 200 for r in answered)
    wait_for(lambda: scrape(server.admin_url)["inference_in_flight_requests"] == 0)
    metrics = scrape(server.admin_url)
    assert metrics["inference_queue_depth"] == 0 and metrics[SUCCESS] == live
    assert server.predict().status_code == 200


def test_killing_the_model_process_answers_its_requests_and_the_pod_recovers(start_server):
    server = start_server(
        {
            "INFERENCE_DURATION_SECONDS": "3",
            "MODEL_LOAD_SECONDS": "1",
            "MODEL_CONCURRENCY": "2",
            "MAX_QUEUE": "4",
        },
        workers=2,
    )
    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(call, server.url) for _ in range(6)]
        wait_for(lambda: scrape(server.admin_url)["inference_queue_depth"] == 4)
        before = scrape(server.admin_url)
        model_pid = server.model_pid()
        killed_at = time.monotonic()
        os.kill(model_pid, signal.SIGKILL)
        results = [future.result() for future in pending]
        answered_within = time.monotonic() - killed_at
    # Every caller gets an answer on its own connection, at once, not after its inference.
    assert answered_within < 2.0
    for response in results:
        assert not isinstance(response, Exception), response
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert response.json()["error"]["code"] == "inference_lost"
    # Not ready until the new model process has loaded; the model reads 0 meanwhile.
    observed = []

    def ready_again() -> bool:
        status = requests.get(server.admin_url + "/ready", timeout=5).json()["status"]
        observed.append((status, scrape(server.admin_url)["inference_model_ready"]))
        return status == "ready"

    wait_for(ready_again)
    assert any(status != "ready" and ready == 0 for status, ready in observed), observed
    assert observed[-1] == ("ready", 1)
    assert server.model_pid() != model_pid
    after = scrape(server.admin_url)
    assert_monotonic(before, after)
    assert after[ERROR] - before[ERROR] == 6
    assert requests.get(server.admin_url + "/health", timeout=5).status_code == 200
    assert server.predict().status_code == 200
