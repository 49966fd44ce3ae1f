"""Slow and stalled clients: probes and /metrics keep answering, and the stalls end in 408."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from localcluster.processes import wait_until
from localcluster.servers import LOOPBACK, scrape
from localcluster.stalls import STALLED_BODY, STALLED_HEADERS, open_stalled, read_all, trickle

REQUEST_TIMEOUT = 3.0


def timed_get(url: str) -> float:
    started = time.perf_counter()
    assert requests.get(url, timeout=10).status_code == 200
    return time.perf_counter() - started


def test_probes_answer_while_hundreds_of_connections_stall_and_every_slot_is_taken(start_server):
    server = start_server(
        {
            "INFERENCE_DURATION_SECONDS": "6",
            "MODEL_CONCURRENCY": "2",
            "MAX_QUEUE": "2",
            "REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
        },
        workers=2,
    )
    with ThreadPoolExecutor(5) as pool:  # 4 predictions and the trickler
        busy = [pool.submit(server.predict) for _ in range(4)]
        deadline = time.monotonic() + 10
        while scrape(server.admin_url)["inference_queue_depth"] < 2:
            assert time.monotonic() < deadline, "slots and queue never filled"
            time.sleep(0.05)
        stop = threading.Event()
        trickler = pool.submit(trickle, server.port, stop)
        stalled = [open_stalled(server.port, STALLED_HEADERS) for _ in range(150)]
        stalled += [open_stalled(server.port, STALLED_BODY) for _ in range(150)]
        opened_at = time.monotonic()

        latencies = []
        while time.monotonic() - opened_at < REQUEST_TIMEOUT - 1:
            for url in (server.admin_url, server.url):
                for path in ("/metrics", "/health", "/ready"):
                    latencies.append(timed_get(url + path))
        receiving = scrape(server.admin_url)["inference_http_receiving_connections"]
        answers = [read_all(sock) for sock in stalled]
        stop.set()
        trickled = trickler.result()
        assert [f.result().status_code for f in busy] == [200] * 4

    # A probe blocked behind the stalls would wait for the 3 s deadline; this
    # bound leaves room for a busy machine (bench/slow_clients.py has the ms).
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    assert receiving >= 300, "the stalled connections are not counted"
    for index, answer in enumerate([*answers, trickled]):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), (index, answer[:200])
        assert b"Connection: close" in head
        assert json.loads(body)["error"]["code"] == "request_timeout"
    samples = scrape(server.admin_url)
    assert samples["inference_http_request_timeouts_total"] == 301
    assert samples["inference_http_receiving_connections"] == 0


def test_a_large_body_all_in_is_not_counted_as_receiving_while_it_is_served(start_server):
    """gunicorn reads a body 8 KiB at a time, so any large request takes more
    than one read; once the last byte is in, the request has arrived, and its
    inference is no slow client."""
    server = start_server({"INFERENCE_DURATION_SECONDS": "3", "MODEL_CONCURRENCY": "1"}, workers=1)
    rows, width = 64, 256  # the defaults' largest tensor: about 100 KiB of JSON
    tensor = {"name": "features", "shape": [rows, width], "datatype": "FP32", "data": [0.5] * (rows * width)}
    url = f"{server.url}/v2/models/inferscale/infer"
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(requests.post, url, json={"inputs": [tensor]}, timeout=30)
        wait_until(lambda: scrape(server.admin_url)["inference_in_flight_requests"] == 1, "the inference", 10)
        assert scrape(server.admin_url)["inference_http_receiving_connections"] == 0
        assert answer.result().status_code == 200
    assert scrape(server.admin_url)["inference_http_receiving_connections"] == 0


def test_an_idle_connection_is_closed_quietly_after_the_keep_alive(start_server):
    server = start_server({"KEEPALIVE_SECONDS": "1", "REQUEST_TIMEOUT_SECONDS": "5"}, workers=1)
    sock = socket.create_connection((LOOPBACK, server.port), timeout=10)
    started = time.monotonic()
    assert read_all(sock) == b""  # no request began, so no 408 is owed
    assert time.monotonic() - started < 4
    samples = scrape(server.admin_url)
    assert samples["inference_http_request_timeouts_total"] == 0


# Requests that stall in their headers, and whether their path is a V2 route's.
STALLED_IN_HEADERS = {
    "v2": (b"POST /v2/models/inferscale/infer HTTP/1.1\r\nHost: x\r\nContent-Le", True),
    "predict": (b"POST /predict HTTP/1.1\r\nHost: x\r\n", False),
    "before-the-path": (b"POS", False),
}


def test_headers_too_slow_get_408_in_their_routes_error_dialect(start_server):
    server = start_server({"REQUEST_TIMEOUT_SECONDS": "3"}, workers=1)
    # One whose request line arrives in two reads: the server has read the
    # first piece (the connection counts as receiving) before the second is sent.
    split = open_stalled(server.port, b"POST /v")
    wait_until(lambda: scrape(server.admin_url)["inference_http_receiving_connections"] == 1, "the first read", 10)
    split.sendall(b"2/models/inferscale/infer HTTP/1.1\r\nHost: x\r\n")
    stalled = {name: open_stalled(server.port, start) for name, (start, _) in STALLED_IN_HEADERS.items()}
    answers = {name: read_all(sock) for name, sock in {**stalled, "v2-line-in-two-reads": split}.items()}
    for name, answer in answers.items():
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), (name, head)
        error = json.loads(body)["error"]
        if STALLED_IN_HEADERS.get(name, (b"", True))[1]:
            assert error == "the request did not arrive within 3 s", name
        else:
            assert error["code"] == "request_timeout", name
