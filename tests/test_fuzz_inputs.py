"""Random and near-valid bodies against a real gunicorn server: never a 5xx, always JSON."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
finite = st.integers(-1000, 1000) | st.floats(allow_nan=False, allow_infinity=False)
numbers = finite | finite | st.integers(-(10**30), 10**30) | st.floats()
predict_bodies = st.fixed_dictionaries({"features": st.lists(numbers | json_values, max_size=300)})
# Mostly near-valid, so the checks behind the schema (shape against data,
# integer datatypes, batch and width limits) are reached, not just the parser.
tensors = st.fixed_dictionaries(
    {
        "name": st.just("features") | st.text(max_size=5),
        "shape": st.lists(st.integers(1, 5), min_size=1, max_size=2)
        | st.lists(st.integers(-1, 400), max_size=3),
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "UINT8", "BYTES", "fp32"]) | json_values,
        "data": st.lists(finite, max_size=20)
        | st.lists(st.lists(finite, max_size=4), max_size=6)
        | st.lists(numbers, max_size=20),
    },
    optional={"parameters": json_values},
)
infer_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=2) | json_values},
    optional={"id": json_values, "outputs": json_values, "parameters": json_values},
)
raw_bodies = st.binary(max_size=200)
content_types = st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"])

PATHS = ["/predict", "/v2/models/inferscale/infer"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from servers import ServerProcess

    process = ServerProcess(
        tmp_path_factory.mktemp("fuzz"),
        {"INFERENCE_DURATION_SECONDS": "0", "MAX_QUEUE": "16", "MAX_BODY_BYTES": "16384"},
        workers=2,
    ).start()
    yield process
    process.stop()


def post(server, path: str, body: bytes, content_type: str) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(server.url + path, data=body, headers=headers, timeout=30)


def assert_clean(response: requests.Response, path: str) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        error = body["error"]
        assert isinstance(error, str if path.startswith("/v2") else dict) and error


def encode(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(body=st.one_of(predict_bodies, infer_bodies, json_values), path=st.sampled_from(PATHS))
def test_structured_bodies_never_cause_a_server_error(server, body, path):
    assert_clean(post(server, path, encode(body), "application/json"), path)


@FUZZ
@given(body=raw_bodies, path=st.sampled_from(PATHS), content_type=content_types)
def test_raw_bytes_never_cause_a_server_error(server, body, path, content_type):
    assert_clean(post(server, path, body, content_type), path)


def test_after_the_fuzzing_the_server_still_answers_and_counted_no_error(server):
    assert server.predict().status_code == 200
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert 'inference_requests_total{status="error"} 0.0' in text
