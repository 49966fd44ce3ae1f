"""Keep-alive clients are moved on: kube-proxy balances connections, not
requests, so a client that never reconnects stays on the pod it first reached.

- After MAX_CONNECTION_AGE_SECONDS the next response says `Connection: close`:
  the pods the HPA adds get a share of clients that never go idle.
- When the pod drains (SIGTERM), idle keep-alive connections are hung up at
  once and answers in flight say `Connection: close`: their clients' next
  request goes to a pod still in the Service, not into this one's 503.
- A worker due for recycling (MAX_REQUESTS) hangs up its idle ones too: their
  next request goes to a worker that stays. A worker told to stop still
  answers a connection it took whose first request has not come yet.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from localcluster.processes import wait_until
from localcluster.servers import LOOPBACK, client_connections, scrape

BODY = json.dumps({"features": [1.0, 2.0, 3.0]})
HEADERS = {"Content-Type": "application/json"}


def exchange(connection: http.client.HTTPConnection, method: str, path: str) -> tuple[int, str, int]:
    """Status, the Connection header, and the client port the request went out on."""
    connection.request(method, path, body=BODY if method == "POST" else None, headers=HEADERS)
    client_port = connection.sock.getsockname()[1]
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("Connection"), client_port


def test_an_old_connection_is_told_to_close_and_the_next_request_reconnects(start_server):
    server = start_server({"MAX_CONNECTION_AGE_SECONDS": "1", "KEEPALIVE_SECONDS": "10"}, workers=1)
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)
    assert exchange(connection, "POST", "/predict")[:2] == (200, "keep-alive")
    status, header, first_port = exchange(connection, "POST", "/predict")
    assert (status, header) == (200, "keep-alive")
    time.sleep(1.1)
    status, header, port = exchange(connection, "POST", "/predict")
    assert (status, header, port) == (200, "close", first_port)
    assert connection.sock is None  # the client closed it, as the header asked
    status, header, port = exchange(connection, "POST", "/predict")
    assert (status, header) == (200, "keep-alive") and port != first_port
    connection.close()


@pytest.mark.parametrize(
    "max_age, port, method, path",
    [
        # Prometheus and the kubelet reach each pod directly: nothing to rebalance.
        ("1", "admin_port", "GET", "/metrics"),
        ("0", "port", "POST", "/predict"),
    ],
    ids=["admin-port", "zero-is-never"],
)
def test_connections_kept_however_old(start_server, max_age, port, method, path):
    server = start_server({"MAX_CONNECTION_AGE_SECONDS": max_age, "KEEPALIVE_SECONDS": "10"}, workers=1)
    connection = http.client.HTTPConnection(LOOPBACK, getattr(server, port), timeout=10)
    _, _, first_port = exchange(connection, method, path)
    time.sleep(1.1)
    assert exchange(connection, method, path) == (200, "keep-alive", first_port)
    connection.close()


def test_a_session_of_back_to_back_requests_loses_none_across_reconnects(start_server):
    """requests (urllib3's pool) as a load generator uses it: every answer arrives, over several connections."""
    server = start_server({"MAX_CONNECTION_AGE_SECONDS": "0.5", "INFERENCE_DURATION_SECONDS": "0.05"}, workers=2)
    closes = 0
    with requests.Session() as session:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            response = session.post(server.url + "/predict", data=BODY, headers=HEADERS, timeout=10)
            assert response.status_code == 200, response.text
            closes += response.headers["Connection"] == "close"
    assert closes >= 4, closes


def hung_up(connection: http.client.HTTPConnection) -> bool:
    """The server closed this idle connection (end-of-stream waiting to be read)."""
    connection.sock.settimeout(0)
    try:
        return connection.sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False


def test_a_draining_pod_moves_its_keep_alive_clients_on_before_its_queue_is_done(start_server):
    server = start_server(
        {
            "INFERENCE_DURATION_SECONDS": "1",
            "MODEL_CONCURRENCY": "1",
            "MAX_QUEUE": "3",
            "GRACEFUL_SHUTDOWN_SECONDS": "20",
            "KEEPALIVE_SECONDS": "30",
            "MAX_CONNECTION_AGE_SECONDS": "0",
        }
    )
    idle = [http.client.HTTPConnection(LOOPBACK, server.port, timeout=30) for _ in range(4)]
    for connection in idle:  # several, so both workers hold some
        assert exchange(connection, "POST", "/predict")[:2] == (200, "keep-alive")
    in_flight = http.client.HTTPConnection(LOOPBACK, server.port, timeout=30)
    in_flight.request("POST", "/predict", body=BODY, headers=HEADERS)
    with ThreadPoolExecutor(3) as pool:
        queued = [pool.submit(server.predict) for _ in range(3)]
        waiting = lambda: scrape(server.admin_url)["inference_queue_depth"]  # noqa: E731
        deadline = time.monotonic() + 10
        while waiting() < 3:
            assert time.monotonic() < deadline, "the queue did not fill"
            time.sleep(0.05)
        server.terminate()
        deadline = time.monotonic() + 10
        while not all(hung_up(connection) for connection in idle):
            assert time.monotonic() < deadline, "idle keep-alive connections still open"
            time.sleep(0.05)
        # Before the drain is over: the queue still holds work.
        assert not all(future.done() for future in queued)
        response = in_flight.getresponse()
        assert (response.status, response.getheader("Connection")) == (200, "close")
        response.read()
        assert [future.result().status_code for future in queued] == [200] * 3
    assert server.process.wait(15), "still running 15 s after SIGTERM"
    assert server.stop() == 0


def test_a_worker_due_for_recycling_hangs_up_its_idle_keep_alive_clients(start_server):
    """gunicorn counts a request as it starts: the worker is due for recycling
    while its last request still runs, and its idle clients go now, not when
    that answer is out (their next request would be admitted by a worker that
    is leaving, and its successor would wait for that answer too)."""
    server = start_server(
        {"INFERENCE_DURATION_SECONDS": "2", "MAX_REQUESTS": "2", "KEEPALIVE_SECONDS": "30"}, workers=1
    )
    idle = http.client.HTTPConnection(LOOPBACK, server.port, timeout=30)
    assert exchange(idle, "POST", "/predict")[:2] == (200, "keep-alive")
    last = http.client.HTTPConnection(LOOPBACK, server.port, timeout=30)
    last.request("POST", "/predict", body=BODY, headers=HEADERS)  # the worker's last request
    deadline = time.monotonic() + 1.5
    while not hung_up(idle):
        assert time.monotonic() < deadline, "the leaving worker kept its idle keep-alive connection"
        time.sleep(0.05)
    response = last.getresponse()
    assert (response.status, response.getheader("Connection")) == (200, "close")
    response.read()
    # The client's next request reconnects, to the worker that replaced it.
    assert server.predict().status_code == 200


def test_a_connection_the_old_worker_took_before_a_reload_is_answered(start_server):
    """SIGHUP: gunicorn starts the new worker, then stops the old one, which
    keeps accepting until its next tick. A client it took then, whose request
    comes after the stop, gets an answer, not a connection closed under it."""
    server = start_server({"INFERENCE_DURATION_SECONDS": "0", "KEEPALIVE_SECONDS": "30"}, workers=1)
    [old] = server.worker_pids()
    fresh = socket.create_connection((LOOPBACK, server.port), timeout=10)
    deadline = time.monotonic() + 10
    while client_connections(old, server.port) < 1:
        assert time.monotonic() < deadline, "the worker did not take the connection"
        time.sleep(0.05)
    server.process.signal(signal.SIGHUP)
    while not set(server.worker_pids()) - {old}:
        assert time.monotonic() < deadline + 10, "no new worker after SIGHUP"
        time.sleep(0.05)
    time.sleep(0.5)  # the old worker has had its SIGTERM
    fresh.sendall(
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY.encode())
    )
    answer = b""
    while chunk := fresh.recv(65536):
        answer += chunk
    fresh.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"\r\nConnection: close\r\n" in answer


def test_connections_are_kept_alive_again_once_a_model_process_drained_alone_is_replaced(start_server):
    """A SIGTERM to the model process alone (not to the pod) drains it, and
    the supervisor replaces it: the workers must not go on closing every
    connection after its answer for the rest of their lives."""
    server = start_server({"INFERENCE_DURATION_SECONDS": "1", "KEEPALIVE_SECONDS": "30"}, workers=1)
    drained = server.model_pid()
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(server.predict)
        wait_until(
            lambda: scrape(server.admin_url).get("inference_in_flight_requests") == 1, "an inference running", 10
        )
        os.kill(drained, signal.SIGTERM)
        wait_until(lambda: requests.get(server.admin_url + "/ready", timeout=2).status_code == 503, "the drain", 10)
        assert in_flight.result().status_code == 200
    wait_until(lambda: server.processes("model-process") not in ([], [drained]), "a new model process", 30)
    server.wait_for("/ready")
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)

    def kept_alive() -> bool:
        status, header, _ = exchange(connection, "POST", "/predict")
        assert status == 200
        if header == "close":
            connection.close()
        return header == "keep-alive"

    wait_until(kept_alive, "an answer that keeps the connection", 5, interval=0.2)
    assert all(exchange(connection, "POST", "/predict")[:2] == (200, "keep-alive") for _ in range(3))
