"""Requests as gunicorn frames them on a real server: pipelined, HTTP/1.0
keep-alive, chunked, and cut short. Each is answered whole, and a body is read
whole or refused: never run in part."""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from localcluster.servers import LOOPBACK, ServerProcess, scrape

PREDICT_BODY = b'{"features": [1, 2, 3]}'
# The smallest limit the settings allow a body is well above PREDICT_BODY.
MAX_BODY_BYTES = 4096


def exchange(port: int, request: bytes, half_close: bool = False) -> bytes:
    """Everything the server sends back on one connection until it closes it."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def answers(received: bytes) -> list[tuple[bytes, dict]]:
    """Each response's status line, headers and JSON body, in order."""
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(headers.get(b"Content-Length", b"0"))
        body, received = rest[:length], rest[length:]
        found.append((lines[0], headers, json.loads(body) if body else {}))
    return found


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"MAX_BODY_BYTES": str(MAX_BODY_BYTES), "INFERENCE_DURATION_SECONDS": "0"}
    process = ServerProcess(tmp_path_factory.mktemp("framing"), env, workers=1).start()
    yield process
    process.stop()


def model_runs(server) -> float:
    # No series before the first success: a test that runs first reads 0.
    return scrape(server.admin_url).get('inference_requests_total{status="success"}', 0.0)


@pytest.mark.parametrize("on", ["port", "admin_port"])
def test_pipelined_answers_without_a_body_are_not_lost(server, on):
    pipelined = (
        b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    received = exchange(getattr(server, on), pipelined)
    # Four heads, in order: two bodiless ones (no Content-Length body follows a
    # HEAD), an OPTIONS with Content-Length 0, and the GET's.
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 4, received
    assert b"Allow: " in received.split(b"\r\n\r\n")[1]
    assert json.loads(received.rsplit(b"\r\n\r\n", 1)[1]) == {"status": "alive"}


def test_an_http_1_0_keep_alive_connection_is_not_timed_out_between_its_requests(start_server):
    server = start_server({"REQUEST_TIMEOUT_SECONDS": "1", "KEEPALIVE_SECONDS": "10"}, workers=1)
    with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.0 200 OK\r\n")
            # Past the 1 s a request has to arrive in: the next one is a new request with its own.
            time.sleep(1.5)
    assert scrape(server.admin_url)["inference_http_request_timeouts_total"] == 0


def read_answer(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) off a connection that stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536) or b"!closed"
        assert not received.endswith(b"!closed"), received
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"Content-Length"])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_body_left_unread_by_an_early_answer_is_read_on_its_own_requests_clock(start_server):
    """A 404 for a wrong model name is answered before the body is read; gunicorn
    then reads the rest of it. That read is the same request's: it must not start
    a new request's clock, which timed out the idle keep-alive connection with a
    408 for a request that never came."""
    server = start_server({"REQUEST_TIMEOUT_SECONDS": "1", "KEEPALIVE_SECONDS": "10"}, workers=1)
    body = INFER_BODY + b" " * 40_000  # well past what gunicorn reads with the headers
    wrong_model = b"POST /v2/models/nosuch/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
        sock.sendall(wrong_model + body)
        assert read_answer(sock).startswith(b"HTTP/1.1 404 ")
        time.sleep(1.5)  # idle past the 1 s a request has to arrive in, well within keep-alive
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200 OK\r\n")
    assert scrape(server.admin_url)["inference_http_request_timeouts_total"] == 0

    # The rest of the body never comes: the request timed out, and the
    # connection ends after its 404 (no 408 can follow an answer).
    with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
        sock.sendall(wrong_model + body[: len(body) // 2])
        assert read_answer(sock).startswith(b"HTTP/1.1 404 ")
        assert sock.recv(65536) == b""
    metrics = scrape(server.admin_url)
    assert metrics["inference_http_request_timeouts_total"] == 1
    assert metrics["inference_http_receiving_connections"] == 0


def test_a_connection_waiting_for_the_rest_of_an_answered_body_is_hung_up_when_the_pod_drains(start_server):
    """Its answer is out: the drain hangs it up as it does the idle keep-alive
    connections, not after the request's clock (60 s) or the workers' stop."""
    server = start_server(
        {"REQUEST_TIMEOUT_SECONDS": "60", "INFERENCE_DURATION_SECONDS": "8", "GRACEFUL_SHUTDOWN_SECONDS": "20"},
        workers=1,
    )
    body = INFER_BODY + b" " * 40_000
    wrong_model = b"POST /v2/models/nosuch/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with ThreadPoolExecutor(1) as pool, socket.create_connection((LOOPBACK, server.port), timeout=30) as sock:
        # A request the drain waits for: the pod stays up, so only the hang-up ends the connection early.
        busy = pool.submit(server.predict)
        deadline = time.monotonic() + 10
        while scrape(server.admin_url)["inference_in_flight_requests"] < 1:
            assert time.monotonic() < deadline, "the inference never started"
            time.sleep(0.05)
        sock.sendall(wrong_model + body[: len(body) // 2])
        assert read_answer(sock).startswith(b"HTTP/1.1 404 ")
        server.terminate()
        assert sock.recv(65536) == b""
        assert not busy.done(), "hung up only once the drain was over"
        assert busy.result().status_code == 200
    assert server.stop() == 0


PREDICT_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
INFER_HEAD = b"POST /v2/models/inferscale/infer HTTP/1.1\r\nHost: x\r\n"
INFER_TENSOR = {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
INFER_BODY = json.dumps({"inputs": [INFER_TENSOR]}).encode()


@pytest.mark.parametrize(
    "head, body",
    [(PREDICT_HEAD, PREDICT_BODY), (INFER_HEAD, INFER_BODY)],
    ids=["predict", "v2-infer"],
)
def test_a_chunked_body_is_read_whole_or_refused(server, head, body):
    def send(chunks: bytes) -> bytes:
        return exchange(server.port, head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)

    runs_before = model_runs(server)

    status, _, _ = answers(send(chunked(body[:7], body[7:])))[0]
    assert status == b"HTTP/1.1 200 OK"
    # Exactly at the limit (JSON allows trailing spaces) is still whole.
    padded = body + b" " * (MAX_BODY_BYTES - len(body))
    assert answers(send(chunked(padded)))[0][0] == b"HTTP/1.1 200 OK"

    # Past the limit, however it is chunked: refused, not cut at the limit and run.
    [(status, headers, answer)] = answers(send(chunked(padded, b" " * 10, b"garbage")))
    assert status == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
    assert headers[b"Connection"] == b"close"
    # Framing that is not chunked encoding: 400, named, never 500.
    [(status, headers, answer)] = answers(send(b"zz\r\n" + body))
    assert status == b"HTTP/1.1 400 BAD REQUEST"
    assert headers[b"Connection"] == b"close"
    assert "chunked encoding is broken" in json.dumps(answer)
    # The model ran the two whole bodies only.
    assert model_runs(server) - runs_before == 2


@pytest.mark.parametrize("sent", [MAX_BODY_BYTES // 2, MAX_BODY_BYTES + 100], ids=["below-limit", "past-limit"])
def test_a_chunked_body_whose_client_stops_before_its_last_chunk_is_named_incomplete(server, sent):
    # One chunk announced larger than what follows; then the client closes its side.
    head = INFER_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    cut = b"%x\r\n" % (4 * MAX_BODY_BYTES) + INFER_BODY + b" " * (sent - len(INFER_BODY))
    runs_before = model_runs(server)
    [(status, headers, answer)] = answers(exchange(server.port, head + cut, half_close=True))
    assert status == b"HTTP/1.1 400 BAD REQUEST", answer
    assert answer == {"error": "the body ended before its last chunk"}
    assert headers[b"Connection"] == b"close"
    assert model_runs(server) == runs_before


@pytest.mark.parametrize(
    "head, body",
    [(PREDICT_HEAD, PREDICT_BODY), (INFER_HEAD, INFER_BODY)],
    ids=["predict", "v2-infer"],
)
def test_a_body_cut_short_of_its_content_length_is_refused_not_run(server, head, body):
    declared = len(body) + 500
    runs_before = model_runs(server)
    received = exchange(server.port, head + b"Content-Length: %d\r\n\r\n" % declared + body, half_close=True)
    [(status, headers, answer)] = answers(received)
    assert status == b"HTTP/1.1 400 BAD REQUEST"
    assert f"the body ended after {len(body)} of its {declared} bytes" in json.dumps(answer)
    assert model_runs(server) == runs_before


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (b"garbage\r\n\r\n", 400, "bad_request"),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "bad_request"),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, "not_implemented"),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: x\r\nContent-Length: 2\r\n\r\n{}", 417, "expectation_failed"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_uri_too_long"),
        (b"GET /health HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
        (b"GET http://[bad HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ],
    ids=["request-line", "two-lengths", "transfer-coding", "expectation", "long-uri", "long-header", "not-a-uri"],
)
@pytest.mark.parametrize("on", ["port", "admin_port"])
def test_requests_gunicorn_refuses_itself_get_a_json_error(server, on, request_bytes, status, code):
    [(status_line, headers, answer)] = answers(exchange(getattr(server, on), request_bytes))
    assert status_line.startswith(b"HTTP/1.1 %d " % status)
    assert (headers[b"Content-Type"], headers[b"Connection"]) == (b"application/json", b"close")
    assert answer["error"]["code"] == code and answer["error"]["message"]


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /v2/health/ready HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET http://x:80/v2/health/ready HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /v2/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"POST /v2/models/inferscale/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
        (b"POST /v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    ],
    ids=["long-header", "absolute-form", "long-uri", "transfer-coding", "two-lengths"],
)
def test_requests_gunicorn_refuses_on_a_v2_path_get_the_protocols_error(server, request_bytes, status):
    # The Open Inference Protocol's error is {"error": "<message>"}: a V2 client
    # reads the message from there, whoever wrote the answer.
    [(status_line, headers, answer)] = answers(exchange(server.port, request_bytes))
    assert status_line.startswith(b"HTTP/1.1 %d " % status)
    assert headers[b"Content-Type"] == b"application/json"
    assert list(answer) == ["error"] and isinstance(answer["error"], str) and answer["error"]


def test_a_pipelined_request_gunicorn_refuses_is_not_answered_in_its_predecessors_dialect(server):
    # Its bytes came in the first request's read: its own path was never seen.
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\ngarbage\r\n\r\n"
    [(first, _, live), (second, _, refused)] = answers(exchange(server.port, request))
    assert first.startswith(b"HTTP/1.1 200 ") and live == {"live": True}
    assert second.startswith(b"HTTP/1.1 400 ") and refused["error"]["code"] == "bad_request"


@pytest.mark.parametrize("path", ["/predict", "/v2/models/inferscale/infer"])
def test_a_client_that_sends_a_refused_body_whole_before_reading_gets_its_413(server, path):
    """http.client (and urllib over it) sends the whole body, then reads. A
    close with megabytes of it unread would reset the connection, and the
    client would lose the 413 before reading it (RFC 9112, 9.6)."""
    body = b'{"features": [' + b"1," * 2_000_000 + b"1]}"
    for _ in range(3):
        connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=30)
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 413
            assert json.loads(response.read())["error"]  # V2's message, or our code and message
        finally:
            connection.close()
