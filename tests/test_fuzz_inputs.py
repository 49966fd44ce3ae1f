"""Random and near-valid bodies against a real gunicorn server: never a 5xx, always JSON,
and no request counted as an error; V2 JSON bodies reach the tensor checks."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

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

# V2 JSON tensors, mostly near-valid, so the checks behind the schema are
# reached: shape against data, elements against the datatype, and the limits
# on the declared shape (the server's defaults: 64 rows, 256 features).
MAX_BATCH_SIZE = 64
MAX_FEATURES = 256
DATATYPES = ["BOOL", "UINT8", "INT16", "INT64", "FP16", "FP32", "FP64", "BYTES"]


@st.composite
def mostly(draw, common, rare):
    """`common` nine times in ten (hypothesis draws small integers, 0 included, often)."""
    return draw(common if draw(st.integers(0, 9)) < 9 else rare)


def good_elements(datatype):
    if datatype == "BOOL":
        return st.booleans()
    if str(datatype).startswith(("INT", "UINT")):
        return st.integers(0, 255)
    return st.integers(-1000, 1000) | st.floats(-1e4, 1e4)


@st.composite
def v2_tensors(draw) -> dict:
    roll = draw(st.integers(0, 4))
    # Now and then a shape or a datatype the schema refuses.
    datatype = draw(mostly(st.sampled_from(DATATYPES), st.sampled_from(["fp32", "STRING"]) | json_values))
    if roll == 3:  # around the batch limit; the data is not read past it
        shape = [draw(st.sampled_from([MAX_BATCH_SIZE + 1, MAX_BATCH_SIZE])), draw(st.integers(1, 3))]
    elif roll == 4:  # around the width limit
        width = draw(st.sampled_from([MAX_FEATURES + 1, MAX_FEATURES]))
        shape = [width] if draw(st.booleans()) else [1, width]
    elif draw(st.integers(0, 9)) < 9:
        shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    else:  # mostly a shape the schema refuses, with data of any size
        shape = draw(st.lists(st.integers(-1, 400), max_size=3))
        roll = None
    count = math.prod(shape)
    if roll is None:
        data = draw(st.lists(finite, max_size=20))
    elif roll >= 3:
        data = [True if datatype == "BOOL" else 1] * count
    else:
        # Two times in three the size the shape declares (else one off), and elements of the datatype.
        size = count if draw(st.integers(0, 2)) < 2 else count + draw(st.sampled_from([1, -1]))
        good = draw(st.integers(0, 2)) < 2
        elements = good_elements(datatype) if good else numbers | st.booleans() | json_values
        data = draw(st.lists(elements, min_size=size, max_size=size))
        if len(shape) == 2 and size == count and draw(st.booleans()):
            data = [data[row * shape[1] : (row + 1) * shape[1]] for row in range(shape[0])]
    tensor = {
        "name": draw(mostly(st.just("features"), st.text(max_size=5))),
        "shape": shape,
        "datatype": datatype,
        "data": data,
    }
    if draw(st.integers(0, 9)) == 9:
        tensor["parameters"] = draw(
            mostly(st.fixed_dictionaries({}, optional={"note": st.text(max_size=4)}), json_values)
        )
    return tensor


# The optional fields valid nine times in ten, so they seldom stop a body at the schema.
requested_outputs = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["probability", "label"])},
        optional={"parameters": st.fixed_dictionaries({}, optional={"binary_data": st.booleans()})},
    ),
    max_size=2,
    unique_by=lambda output: output["name"],
)
request_parameters = st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans()})
infer_bodies = st.fixed_dictionaries(
    {
        "inputs": mostly(
            st.lists(v2_tensors(), min_size=1, max_size=1), st.lists(v2_tensors(), max_size=2) | json_values
        )
    },
    optional={
        "id": mostly(st.text(max_size=8), json_values),
        "outputs": mostly(requested_outputs, json_values),
        "parameters": mostly(request_parameters, json_values),
    },
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

PREDICT = "/predict"
INFER = "/v2/models/inferscale/infer"
ERRORS = 'inference_requests_total{status="error"}'


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


def errors_counted(server) -> float:
    from localcluster.servers import scrape

    return scrape(server.admin_url).get(ERRORS, 0.0)


def fuzz(server, examples) -> None:
    """Run a test's examples; the server answers after them and counted no error during them.

    Each test checks its own examples, whatever order the tests run in."""
    before = errors_counted(server)
    examples()
    assert server.predict().status_code == 200
    assert errors_counted(server) == before


def post(server, path: str, body: bytes, content_type: str) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(server.url + path, data=body, headers=headers, timeout=30)


def answer(response: requests.Response) -> dict:
    """The JSON of an answer; with binary outputs, the JSON header before them."""
    if response.headers.get("Content-Type") == "application/octet-stream":
        length = int(response.headers["Inference-Header-Content-Length"])
        return json.loads(response.content[:length])
    return response.json()


def assert_clean(response: requests.Response, path: str) -> None:
    assert response.status_code < 500, response.text
    body = answer(response)
    if response.status_code >= 400:
        error = body["error"]
        assert isinstance(error, str if path.startswith("/v2") else dict) and error


# What a V2 answer says about how far its body got, from the error message.
CHECKS = {
    # The data against its shape, or the shape against the batch and width limits.
    "shape": re.compile(
        r"(values|rows) but shape|^every row of input .* must hold|^batch of \d+ rows; at most"
        r"|^\d+ features per row; this model accepts at most"
    ),
    "datatype": re.compile(r"datatype \w+ is not accepted|^input .* is \w+: data element"),
}


def reached(response: requests.Response) -> str:
    if response.status_code == 200:
        return "answered"
    message = response.json()["error"]
    return next((check for check, pattern in CHECKS.items() if pattern.search(message)), "other")


def encode(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_predict_bodies_never_cause_a_server_error(server):
    @FUZZ
    @given(body=predict_bodies | infer_bodies | json_values)
    def examples(body):
        assert_clean(post(server, PREDICT, encode(body), "application/json"), PREDICT)

    fuzz(server, examples)


def test_v2_json_bodies_reach_the_tensor_checks_and_never_cause_a_server_error(server):
    seen: Counter[str] = Counter()

    # More examples than the others: hypothesis's draws clump by run, and the
    # assertion below needs each outcome in every run.
    @settings(FUZZ, max_examples=200)
    @given(body=mostly(infer_bodies, json_values))
    def examples(body):
        response = post(server, INFER, encode(body), "application/json")
        assert_clean(response, INFER)
        seen[reached(response)] += 1

    fuzz(server, examples)
    # Past the schema: some answered, and each check behind it refused some.
    assert all(seen[outcome] for outcome in ["answered", *CHECKS]), seen


def test_raw_bytes_never_cause_a_server_error(server):
    @FUZZ
    @given(body=raw_bodies, path=st.sampled_from([PREDICT, INFER]), content_type=content_types)
    def examples(body, path, content_type):
        assert_clean(post(server, path, body, content_type), path)

    fuzz(server, examples)


def test_binary_bodies_never_cause_a_server_error(server):
    @FUZZ
    @given(
        request=binary_requests(),
        header_length=header_lengths,
        content_type=content_types | st.just("application/octet-stream"),
    )
    def examples(request, header_length, content_type):
        body, tail = request
        header = encode(body)
        # An int is an offset from the JSON header's true length; text goes as it is.
        if isinstance(header_length, int):
            header_length = str(len(header) + header_length)
        headers = {"Content-Type": content_type} if content_type else {}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = header_length
        assert_clean(requests.post(server.url + INFER, data=header + tail, headers=headers, timeout=30), INFER)

    fuzz(server, examples)
