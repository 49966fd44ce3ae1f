"""The server as it runs in a pod: `inferscale serve`, its model process and gunicorn, on loopback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.mmap_dict import MmapedDict

from inferscale.settings import Settings
from inferscale.supervisor import Lost, Supervisor
from localcluster.servers import LOOPBACK, ServerProcess, free_port, process_name, scrape, socket_inodes

SUCCESS = 'inference_requests_total{status="success"}'
REJECTED = 'inference_requests_total{status="rejected"}'


def timed_get(url: str) -> float:
    started = time.perf_counter()
    response = requests.get(url, timeout=10)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


@contextlib.contextmanager
def saturating_load(server, clients: int):
    """Keep `clients` predict calls outstanding; yields the statuses seen so far."""
    statuses: list[int] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            statuses.append(server.predict(timeout=60).status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


# access_log.py's line: Apache combined format, then the seconds taken.
ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\d+) '
    r'"([^"]*)" "([^"]*)" (\d+\.\d{6})$',
    re.MULTILINE,
)


def test_each_request_on_the_main_port_is_one_access_line_unless_access_log_is_false(start_server):
    """At LOG_LEVEL=warning, as the tests run: the access log does not follow it.
    The admin port's probes and scrapes are never logged."""
    logged, quiet = start_server(), start_server({"ACCESS_LOG": "false"})
    answers = {}
    for server in (logged, quiet):
        ok = server.predict()
        refused = requests.post(
            server.url + "/v2/models/nosuch/infer",
            json={},
            headers={"User-Agent": "probe/1", "Referer": "http://example.test/"},
            timeout=10,
        )
        assert (ok.status_code, refused.status_code) == (200, 404)
        assert requests.get(server.admin_url + "/metrics", timeout=10).status_code == 200
        answers[server] = (ok, refused)
        # Stopped, so that every line written has reached the log.
        server.stop()
    ok, refused = answers[logged]
    lines = ACCESS_LINE.findall(logged.log())
    # In any order: each worker writes its line once its answer is sent, and the two may have taken one each.
    assert sorted(line[:6] for line in lines) == [
        ("POST", "/predict", "200", str(len(ok.content)), "-", f"python-requests/{requests.__version__}"),
        ("POST", "/v2/models/nosuch/infer", "404", str(len(refused.content)), "http://example.test/", "probe/1"),
    ]
    assert all(0 <= float(line[6]) < 10 for line in lines)
    assert ACCESS_LINE.findall(quiet.log()) == [] and "/predict" not in quiet.log()


def test_both_ports_accept_before_any_gunicorn_exists(tmp_path):
    """The supervisor binds PORT and ADMIN_PORT itself, before it forks: a client
    let in the moment /ready says yes (the admin gunicorn may be up before the
    main one) waits in PORT's backlog for a worker instead of being refused."""
    settings = Settings(
        host=LOOPBACK, port=free_port(), admin_port=free_port(), prometheus_multiproc_dir=str(tmp_path / "metrics")
    )
    supervisor = Supervisor(settings, str(tmp_path / "model.sock"))
    try:
        for port in (settings.port, settings.admin_port):
            socket.create_connection((LOOPBACK, port), timeout=2).close()
    finally:
        supervisor.listener.close()
        for listener in supervisor.http_listeners.values():
            listener.close()


def test_metrics_and_health_answer_fast_while_every_slot_is_busy(start_server):
    server = start_server({"INFERENCE_DURATION_SECONDS": "3", "MODEL_CONCURRENCY": "2", "MAX_QUEUE": "6"}, workers=2)
    latencies, saturated = [], []
    with saturating_load(server, clients=12) as statuses:
        time.sleep(1.0)
        for _ in range(20):
            for url in (server.admin_url, server.url):
                latencies.append(timed_get(url + "/metrics"))
                latencies.append(timed_get(url + "/health"))
            samples = scrape(server.admin_url)
            saturated.append(samples["inference_in_flight_requests"] == 2 and samples["inference_queue_depth"] > 0)
            time.sleep(0.1)
    assert sum(saturated) >= len(saturated) * 0.8, "the load did not keep every slot busy"
    assert 503 in statuses, "the queue never filled"
    # A probe that waited behind a slot would take a whole 3 s inference; the
    # bound leaves room for a busy machine (bench/slow_clients.py has the
    # milliseconds).
    assert max(latencies) < 1.5, sorted(latencies)[-5:]


def test_every_thread_of_the_request_path_yields_the_cpu_to_the_admin_worker(start_server):
    """Under saturation a probe or a scrape gets the CPU first: the HTTP
    workers and the model process, every thread of them (Linux keeps a nice
    value per thread), run at most a ninth of the admin worker's CPU weight,
    10 nice levels or more below it (bench/scrape_priority.py)."""
    server = start_server({"INFERENCE_DURATION_SECONDS": "0.2", "MODEL_CONCURRENCY": "3"}, workers=2)
    assert server.predict().status_code == 200  # the model process's slot threads exist once used
    [admin] = server.processes("admin-worker")
    [admin_nice] = set(thread_niceness(admin).values())
    model_threads = thread_niceness(server.model_pid())
    # Its main thread, a reader per HTTP worker and a slot: threads started after its nice call.
    assert len(model_threads) >= 1 + 2 + 1
    niceness = dict(model_threads)
    for pid in server.worker_pids():
        niceness.update(thread_niceness(pid))
    # 19 is the lowest priority there is: a server started at nice 10 or more gets that.
    assert min(niceness.values()) >= min(admin_nice + 10, 19), (admin_nice, niceness)


def thread_niceness(pid: int) -> dict[int, int]:
    """The nice value of each of the process's threads (Linux's PRIO_PROCESS takes a thread id)."""
    return {int(task): os.getpriority(os.PRIO_PROCESS, int(task)) for task in os.listdir(f"/proc/{pid}/task")}


def test_success_counter_sums_predictions_across_both_workers(start_server):
    server = start_server({"INFERENCE_DURATION_SECONDS": "0.05", "MAX_QUEUE": "8"}, workers=2)
    predictions = 40
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: server.predict(), range(predictions)))
    assert [r.status_code for r in responses] == [200] * predictions
    per_worker = success_counts_per_process(server.multiproc_dir)
    assert len([count for count in per_worker.values() if count > 0]) == 2, per_worker
    assert scrape(server.admin_url)[SUCCESS] == predictions


def success_counts_per_process(directory: Path) -> dict[str, float]:
    counts = {}
    for path in directory.glob("counter_*.db"):
        counts[path.stem] = sum(
            value
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path))
            if '"status": "success"' in key
        )
    return counts


def test_cold_start_is_unready_while_loading_and_alive_throughout(start_server):
    load_seconds = 4.0
    server = start_server({"MODEL_LOAD_SECONDS": str(load_seconds)}, workers=1, wait_ready=False)
    readiness = []
    while not readiness or readiness[-1][1].status_code != 200:
        assert time.monotonic() - server.started_at < load_seconds + 20, "never became ready"
        assert requests.get(server.admin_url + "/health", timeout=5).status_code == 200
        readiness.append((time.monotonic() - server.started_at, requests.get(server.admin_url + "/ready", timeout=5)))
        time.sleep(0.1)
    unready = [r.json()["status"] for _, r in readiness[:-1]]
    assert "loading" in unready and set(unready) <= {"loading", "model_unreachable"}, unready
    # Loading began when the process did, so readiness cannot come sooner.
    assert readiness[-1][0] >= load_seconds
    assert scrape(server.admin_url)["inference_model_ready"] == 1


def test_the_queue_bound_is_the_pods_whichever_worker_takes_the_request(start_server):
    server = start_server({"INFERENCE_DURATION_SECONDS": "1.5", "MODEL_CONCURRENCY": "1", "MAX_QUEUE": "2"}, workers=3)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: server.predict(), range(6)))
    ok = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 503]
    # One slot and two queue places per pod, however the 6 spread over 3 workers.
    assert len(ok) == 3 and len(rejected) == 3
    for response in rejected:
        assert response.headers["Retry-After"] == "2"
        assert response.json()["error"]["code"] == "overloaded"
    # One slot: the admitted three ran back to back, each waiting one more
    # 1.5 s inference than the one before (less however much later it arrived).
    waits = sorted(r.json()["queue_seconds"] for r in ok)
    assert waits[0] < 0.5 and waits[1] - waits[0] > 1.0 and waits[2] - waits[1] > 1.0, waits
    samples = scrape(server.admin_url)
    assert samples[SUCCESS] == 3 and samples[REJECTED] == 3
    assert samples["inference_request_duration_seconds_count"] == 3


def test_sigterm_finishes_in_flight_and_queued_work_then_exits(start_server):
    server = start_server(
        {
            "INFERENCE_DURATION_SECONDS": "1",
            "MODEL_CONCURRENCY": "1",
            "MAX_QUEUE": "3",
            "GRACEFUL_SHUTDOWN_SECONDS": "20",
        },
        workers=2,
    )
    with ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(server.predict) for _ in range(4)]
        wait_until(lambda: scrape(server.admin_url)["inference_queue_depth"] == 3)
        server.terminate()
        wait_until(lambda: requests.get(server.admin_url + "/ready", timeout=2).status_code == 503)
        assert requests.get(server.admin_url + "/ready", timeout=2).json() == {"status": "draining"}
        assert requests.get(server.admin_url + "/health", timeout=2).status_code == 200
        refused = server.predict()
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert [f.result().status_code for f in pending] == [200] * 4
    assert server.process.wait(15), "still running 15 s after SIGTERM"
    assert server.stop() == 0


def test_only_the_gunicorns_hold_the_http_ports_once_forked(start_server):
    """A port the supervisor still held after its gunicorn stopped would take
    connections into a backlog nobody accepts from, and reset them only when
    the pod exits; a port no process listens on refuses them at once."""
    server = start_server({"INFERENCE_DURATION_SECONDS": "0"}, workers=1)
    listening = listening_sockets({server.port, server.admin_port})
    assert len(listening) == 2
    supervisor = server.process.pid
    assert supervisor is not None and process_name(supervisor) == "inferscale"
    assert not listening & socket_inodes(supervisor)
    assert not listening & socket_inodes(server.model_pid())
    [main] = server.processes("gunicorn")
    [admin] = server.processes("gunicorn-admin")
    assert len(listening & socket_inodes(main)) == len(listening & socket_inodes(admin)) == 1


def listening_sockets(ports: set[int]) -> set[str]:
    """Inodes of the TCP sockets listening on `ports`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def test_worker_recycling_keeps_counters_monotonic_and_scrape_bounded(start_server):
    server = start_server(
        {"INFERENCE_DURATION_SECONDS": "0", "MAX_REQUESTS": "5", "MAX_QUEUE": "8", "LOG_LEVEL": "info"},
        workers=2,
    )
    answered, last_total = 0, 0.0
    for _round in range(10):
        # A gevent worker notices it is due for recycling within a second of its
        # last request: pause so each round meets fresh workers.
        time.sleep(1.2)
        for _ in range(10):
            # A recycling worker may close the connection under a request it never
            # read; a client retries such a request (it was not admitted).
            response = retry_on_connection_error(server.predict)
            assert response.status_code == 200
            answered += 1
        total = scrape(server.admin_url)[SUCCESS]
        assert total >= last_total, "counter went backwards across a worker recycle"
        last_total = total
    assert last_total == answered
    recycles = server.log().count("Booting worker") - server.workers
    assert recycles >= 8, "workers were not recycled; the test proves nothing"
    # A scrape reads every file in the directory, so its cost follows their
    # number: three per live HTTP worker (counter, histogram, live gauge), one
    # more worker that may be starting, two of the admin worker, three of the
    # model process, one of the supervisor and the two archives; not one per
    # recycle.
    assert len(list(server.multiproc_dir.glob("*.db"))) <= 3 * (server.workers + 1) + 2 + 3 + 1 + 2


def test_a_recycled_worker_answers_every_request_it_admitted(start_server):
    """One worker, one slot: the fifth request makes the worker due for
    recycling (gunicorn counts a request as it starts), and five are admitted,
    the last answered 10 s later, past gunicorn's default graceful stop (5 s)."""
    server = start_server(
        {"INFERENCE_DURATION_SECONDS": "2", "MODEL_CONCURRENCY": "1", "MAX_QUEUE": "4", "MAX_REQUESTS": "5"},
        workers=1,
    )
    [recycled] = server.worker_pids()
    with ThreadPoolExecutor(5) as pool:
        pending = [pool.submit(server.predict) for _ in range(5)]
        wait_until(lambda: scrape(server.admin_url)["inference_queue_depth"] == 4)
        # No retries: each of these was admitted, so none may be lost.
        statuses = [future.result().status_code for future in pending]
    assert statuses == [200] * 5
    wait_until(lambda: recycled not in server.worker_pids() and len(server.worker_pids()) == 1)
    assert scrape(server.admin_url)[SUCCESS] == 5
    assert "graceful timeout" not in server.log().lower()


def retry_on_connection_error(call, attempts: int = 5):
    for attempt in range(attempts):
        try:
            return call()
        except requests.ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def outcome(future) -> int | str:
    """A request's status, or how it failed (the server went before answering)."""
    try:
        return future.result().status_code
    except requests.RequestException as error:
        return type(error).__name__


def queue_up(server, requests_count: int, pool: ThreadPoolExecutor) -> list:
    """`requests_count` predictions: one running, the rest queued behind it."""
    pending = [pool.submit(server.predict) for _ in range(requests_count)]
    wait_until(lambda: scrape(server.admin_url)["inference_queue_depth"] == requests_count - 1)
    return pending


def ready(admin_url: str) -> bool:
    with contextlib.suppress(requests.ConnectionError):
        return requests.get(admin_url + "/ready", timeout=1).status_code == 200
    return False


# One slot, 2 s each: five requests are 10 s of work, twice gunicorn's own 5 s stop.
LONG_QUEUE = {
    "INFERENCE_DURATION_SECONDS": "2",
    "MODEL_CONCURRENCY": "1",
    "MAX_QUEUE": "4",
    "GRACEFUL_SHUTDOWN_SECONDS": "30",
}


def test_a_sigterm_to_the_whole_process_group_drains_as_one_to_the_pod_does(tmp_path):
    """systemd's default KillMode and `kill -TERM -PGID` signal every process
    of the group: the gunicorns must not stop on their own 5 s clock while the
    model still drains the queue."""
    server = ServerProcess(tmp_path, LONG_QUEUE, workers=1)
    with open(server.log_path, "wb") as log:
        group = subprocess.Popen(
            server.command, env=server.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(lambda: ready(server.admin_url), timeout=60)
        with ThreadPoolExecutor(5) as pool:
            pending = queue_up(server, 5, pool)
            os.killpg(group.pid, signal.SIGTERM)
            assert [outcome(future) for future in pending] == [200] * 5
        assert group.wait(30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group.pid, signal.SIGKILL)
        group.wait(10)


def test_sigint_during_the_drain_stops_at_once(start_server):
    """docs/server.md: SIGINT stops everything at once, a drain under way too."""
    server = start_server(LONG_QUEUE, workers=1)
    with ThreadPoolExecutor(5) as pool:
        pending = queue_up(server, 5, pool)
        server.terminate()
        wait_until(lambda: requests.get(server.admin_url + "/ready", timeout=2).json() == {"status": "draining"})
        server.process.signal(signal.SIGINT)
        outcomes = [outcome(future) for future in pending]
    # Stopped with work left: the drain (10 s of it) was not waited for.
    assert outcomes.count(200) < 5, outcomes
    assert server.process.wait(30)
    assert "SIGINT during the graceful stop" in server.log()


def test_the_admin_gunicorn_dying_drains_the_queue_before_the_pod_ends(start_server):
    """Probes and scrapes are gone, but the main port can still answer what
    it admitted: the pod ends, with code 1, after a drain."""
    server = start_server(LONG_QUEUE, workers=1)
    with ThreadPoolExecutor(5) as pool:
        pending = queue_up(server, 5, pool)
        [admin_master] = server.processes("gunicorn-admin")
        os.kill(admin_master, signal.SIGKILL)
        assert [outcome(future) for future in pending] == [200] * 5
    assert server.process.wait(30)
    assert server.stop() == 1


def test_when_both_gunicorns_are_gone_at_once_the_main_ports_loss_decides():
    """Reaped in one pass, in either order: with the main port gone nobody
    would answer a drained queue, so the pod stops at once."""
    supervisor = Supervisor.__new__(Supervisor)  # its decision alone, no processes
    supervisor.restart_at = None
    killed = signal.SIGKILL.value  # a wait status: killed by SIGKILL
    for reaped in ([(12, killed), (11, killed)], [(11, killed), (12, killed)]):
        supervisor.gunicorn_pid, supervisor.admin_pid = 11, 12
        supervisor._reap = lambda reaped=reaped: reaped
        assert supervisor._reap_and_restart() is Lost.MAIN
    supervisor.gunicorn_pid, supervisor.admin_pid = 11, 12
    supervisor._reap = lambda: [(12, killed)]
    assert supervisor._reap_and_restart() is Lost.ADMIN
