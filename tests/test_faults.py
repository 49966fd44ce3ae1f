"""Processes of the pod killed, stopped or stuck under load: what callers and the metrics see."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from localcluster.servers import client_connections, process_tree, scrape

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


def call(url: str, timeout: float = 60) -> requests.Response | Exception:
    """One request on its own connection; the exception if the connection broke."""
    try:
        return requests.post(url + "/predict", json={"features": [1.0]}, timeout=timeout)
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


def signal_the_model_process_under_load(server, signum: int):
    """Both slots busy and 4 requests queued (MODEL_CONCURRENCY 2, MAX_QUEUE 4),
    then `signum` to the model process: the metrics just before, its pid, every
    caller's answer and how long after the signal the last one came."""
    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(call, server.url, 30) for _ in range(6)]
        wait_for(lambda: scrape(server.admin_url)["inference_queue_depth"] == 4)
        before = scrape(server.admin_url)
        model_pid = server.model_pid()
        signalled_at = time.monotonic()
        os.kill(model_pid, signum)
        results = [future.result() for future in pending]
    return before, model_pid, results, time.monotonic() - signalled_at


def assert_all_lost(results: list) -> None:
    for response in results:
        assert not isinstance(response, Exception), response
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert response.json()["error"]["code"] == "inference_lost"


def restarts(url: str) -> dict[str, float]:
    metrics = scrape(url)
    return {
        reason: metrics[f'inference_model_process_restarts_total{{reason="{reason}"}}']
        for reason in ("died", "wedged", "timed_out")
    }


def test_killing_the_model_process_answers_its_requests_and_the_pod_recovers(start_server):
    server = start_server({"INFERENCE_DURATION_SECONDS": "3", "MODEL_LOAD_SECONDS": "1", "MAX_QUEUE": "4"}, workers=2)
    before, model_pid, results, answered_within = signal_the_model_process_under_load(server, signal.SIGKILL)
    # Every caller gets an answer on its own connection, at once, not after its inference.
    assert answered_within < 2.0
    assert_all_lost(results)
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
    assert restarts(server.admin_url) == {"died": 1, "wedged": 0, "timed_out": 0}
    assert requests.get(server.admin_url + "/health", timeout=5).status_code == 200
    assert server.predict().status_code == 200


def test_a_model_process_that_stopped_running_is_killed_and_its_requests_answered(start_server):
    """Alive but wedged (here SIGSTOP; a native call holding the GIL looks the
    same): nothing dies, so without the watchdog every request hangs on it."""
    server = start_server(
        {"INFERENCE_DURATION_SECONDS": "5", "MODEL_LOAD_SECONDS": "1", "MAX_QUEUE": "4", "MODEL_WATCHDOG_SECONDS": "3"},
        workers=2,
    )
    before, model_pid, results, _ = signal_the_model_process_under_load(server, signal.SIGSTOP)
    assert_all_lost(results)
    assert f"model process {model_pid} has not run for" in server.log() and "; killing it\n" in server.log()
    wait_for(lambda: requests.get(server.admin_url + "/ready", timeout=5).status_code == 200)
    assert server.model_pid() != model_pid
    assert not os.path.exists(f"/proc/{model_pid}")  # killed and reaped, not left stopped
    after = scrape(server.admin_url)
    assert_monotonic(before, after)
    assert after[ERROR] - before[ERROR] == 6
    assert restarts(server.admin_url) == {"died": 0, "wedged": 1, "timed_out": 0}
    assert server.predict().status_code == 200


def test_a_model_process_busy_in_long_inferences_is_not_taken_for_a_wedged_one(start_server):
    """A load (a sleep here) and inferences burning CPU on every slot, each
    longer than the watchdog: the heartbeat runs beside them."""
    server = start_server(
        {
            "INFERENCE_DURATION_SECONDS": "5",
            "INFERENCE_MODE": "cpu",
            "MODEL_LOAD_SECONDS": "4",
            "MODEL_CONCURRENCY": "2",
            "MODEL_WATCHDOG_SECONDS": "3",
        },
        workers=2,
    )
    model_pid = server.model_pid()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: call(server.url), range(4)))
    assert [getattr(r, "status_code", r) for r in results] == [200] * 4
    assert server.model_pid() == model_pid
    assert "has not run for" not in server.log()
    assert restarts(server.admin_url) == {"died": 0, "wedged": 0, "timed_out": 0}


def test_a_pod_paused_whole_keeps_its_model_process(start_server):
    """Ctrl-Z, `docker pause`, the cgroup freezer: every process stops, and on
    resume the supervisor finds a heartbeat as old as the pause. Here it runs
    first, until it has said so; the model process, resumed then, beats before
    the second look, so it was never wedged."""
    server = start_server({"MODEL_LOAD_SECONDS": "0", "MODEL_WATCHDOG_SECONDS": "5"}, workers=1)
    model_pid = server.model_pid()
    supervisor, *below = process_tree(server.process.pid)
    for pid in (supervisor, *below):
        os.kill(pid, signal.SIGSTOP)
    time.sleep(6)
    os.kill(supervisor, signal.SIGCONT)
    wait_for(lambda: "killing it unless it runs" in server.log(), timeout=5, interval=0.01)
    for pid in below:
        os.kill(pid, signal.SIGCONT)
    time.sleep(2)
    assert server.processes("model-process") == [model_pid], server.log()
    assert "has not run for" in server.log() and "; killing it\n" not in server.log()
    assert restarts(server.admin_url) == {"died": 0, "wedged": 0, "timed_out": 0}
    assert server.predict().status_code == 200


# ptrace(2) requests, and waitpid's __WALL (which Python's os does not name):
# a traced thread of another process is waited for as a child.
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000
# What time.sleep, the simulated inference, waits in, by architecture.
CLOCK_NANOSLEEP = {"x86_64": 230, "aarch64": 115}


class HeldThread:
    """One thread of another process held in a ptrace stop while the rest of the
    process runs on. A slot stuck in a call that releases the GIL (a hung
    device, a read that never returns) looks like this to the process."""

    def __init__(self, tid: int):
        self.tid = tid
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._ptrace(PTRACE_SEIZE)
        try:
            self._ptrace(PTRACE_INTERRUPT)
            _, status = os.waitpid(tid, WALL)
            assert os.WIFSTOPPED(status), status
        except BaseException:
            self.release()
            raise

    def exited(self) -> bool:
        """Reap it once its process has ended it: until then, the supervisor
        cannot reap the process."""
        tid, status = os.waitpid(self.tid, os.WNOHANG | WALL)
        return tid != 0 and (os.WIFEXITED(status) or os.WIFSIGNALED(status))

    def release(self) -> None:
        """Let it run again, or reap it if its process ended it: a failed test
        must leave neither a held thread nor one its supervisor cannot reap."""
        if self._libc.ptrace(PTRACE_DETACH, self.tid, None, None) == 0:
            return
        if ctypes.get_errno() != errno.ESRCH:
            raise OSError(ctypes.get_errno(), f"PTRACE_DETACH {self.tid}")
        with contextlib.suppress(ChildProcessError):
            wait_for(self.exited, timeout=5)

    def _ptrace(self, request: int) -> None:
        if self._libc.ptrace(request, self.tid, None, None) == -1:
            raise OSError(ctypes.get_errno(), f"ptrace {request:#x} on thread {self.tid}")


def threads(pid: int) -> set[int]:
    return {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}


def sleeping(pid: int, tid: int) -> bool:
    """In the sleep of an inference, the GIL released: a stop there holds nobody else up."""
    number = CLOCK_NANOSLEEP.get(platform.machine())
    assert number is not None, f"clock_nanosleep's number on {platform.machine()} is not known here"
    call = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    return call[0] == str(number)


def test_an_inference_stuck_past_its_time_limit_gets_504_and_the_model_process_is_replaced(start_server):
    """A slot stuck for good where the GIL is released: the heartbeat runs on,
    so the watchdog sees nothing, and only a new process gets the slot back."""
    server = start_server(
        {
            # The thread is found and held within this sleep, its GIL released.
            "INFERENCE_DURATION_SECONDS": "4",
            "INFERENCE_TIMEOUT_SECONDS": "5",
            "MODEL_LOAD_SECONDS": "1",
            "MODEL_CONCURRENCY": "2",
            "MAX_QUEUE": "4",
            "MODEL_WATCHDOG_SECONDS": "2",
            # Its connection lives through the restart: only a pod stopping sends it away.
            "KEEPALIVE_SECONDS": "60",
            "MAX_CONNECTION_AGE_SECONDS": "0",
        },
        workers=1,
    )
    kept_alive = requests.Session()
    assert kept_alive.get(server.url + "/health", timeout=5).status_code == 200
    model_pid = server.model_pid()
    before_any_inference = threads(model_pid)
    with ThreadPoolExecutor(5) as pool:
        stuck = pool.submit(call, server.url, 30)
        # The executor starts its first slot thread for this first request.
        (slot,) = wait_for(
            lambda: [t for t in threads(model_pid) - before_any_inference if sleeping(model_pid, t)], interval=0.005
        )
        held = HeldThread(slot)
        try:
            # One at a time runs on the other slot (4 s each), the rest queue.
            others = [pool.submit(call, server.url, 30) for _ in range(4)]
            timed_out = stuck.result()
            wait_for(lambda: requests.get(server.admin_url + "/ready", timeout=5).status_code == 503, timeout=2)
            refused = server.predict(timeout=10)
            answered = [future.result() for future in others]
            wait_for(held.exited, timeout=10)
        finally:
            held.release()
    assert timed_out.status_code == 504 and "Retry-After" not in timed_out.headers, timed_out.text
    assert timed_out.json()["error"]["code"] == "inference_timeout"
    assert "over its 5 s time limit" in timed_out.json()["error"]["message"]
    # The process takes nothing new once one slot is stuck, and answers its
    # queue at once (nothing of theirs ran) with a 503 to retry elsewhere; what
    # ran on the other slot (4 s each, under the limit) is answered 200.
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
    codes = [r.status_code if r.status_code == 200 else r.json()["error"]["code"] for r in answered]
    lost = codes.count("inference_lost")
    assert codes.count(200) >= 1 and lost >= 1 and codes.count(200) + lost == 4, codes
    wait_for(lambda: requests.get(server.admin_url + "/ready", timeout=5).status_code == 200)
    assert server.model_pid() != model_pid
    assert f"1 inference(s) ran over INFERENCE_TIMEOUT_SECONDS=5: answered 504, and {lost} queued" in server.log()
    assert "(timed_out) after" in server.log()
    assert "has not run for" not in server.log()  # the watchdog never suspected it
    assert restarts(server.admin_url) == {"died": 0, "wedged": 0, "timed_out": 1}
    # The pod never stopped: its keep-alive clients were not sent away.
    again = kept_alive.post(server.url + "/predict", json={"features": [1.0]}, timeout=10)
    assert again.status_code == 200 and again.headers.get("Connection", "").lower() != "close"
