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
        "shape": st.lists(st.integers(1, 5), min_size=1, max_size=2) | st.lists(st.integers(-1, 400), max_size=3),
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
# Binary tensor data extension: bodies whose sizes mostly add up, so the
# checks behind the layout (element sizes, BOOL bytes, finite floats) are reached.
ELEMENT_SIZES = {
    "BOOL": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT32": 4,
    "INT64": 8,
    "FP16": 2,
    "FP32": 4,
    "FP64": 8,
    "BYTES": 5,
}


@st.composite
def binary_requests(draw) -> tuple[dict, bytes]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    datatype = draw(st.sampled_from(sorted(ELEMENT_SIZES)))
    exact = ELEMENT_SIZES[datatype] * shape[0] * (shape[1] if len(shape) == 2 else 1)
    size = draw(st.just(exact) | st.integers(-1, 64) | json_values)
    tensor = {"name": "features", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}
    if draw(st.integers(0, 9)) == 0:
        tensor["data"] = draw(json_values)
    fits = isinstance(size, int) and 0 <= size <= 256 and draw(st.integers(0, 3)) > 0
    tail = draw(st.binary(min_size=size, max_size=size) if fits else st.binary(max_size=64))
    return {"inputs": [tensor]}, tail


header_lengths = st.sampled_from([0, 0, None]) | st.integers(-3, 3) | st.text(alphabet="0123456789-+.x", max_size=4)
raw_bodies = st.binary(max_size=200)
content_types = st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"])

PATHS = ["/predict", "/v2/models/inferscale/infer"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from localcluster.servers import ServerProcess

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


@FUZZ
@given(
    request=binary_requests(),
    header_length=header_lengths,
    content_type=content_types | st.just("application/octet-stream"),
)
def test_binary_bodies_never_cause_a_server_error(server, request, header_length, content_type):
    body, tail = request
    header = encode(body)
    # An int is an offset from the JSON header's true length; text goes as it is.
    if isinstance(header_length, int):
        header_length = str(len(header) + header_length)
    headers = {"Content-Type": content_type} if content_type else {}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    path = PATHS[1]
    assert_clean(requests.post(server.url + path, data=header + tail, headers=headers, timeout=30), path)


def test_after_the_fuzzing_the_server_still_answers_and_counted_no_error(server):
    assert server.predict().status_code == 200
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert 'inference_requests_total{status="error"} 0.0' in text
