"""The Open Inference Protocol (KServe V2) routes in process: every body the spec allows, every refusal.

Bodies are written by hand from the protocol's REST spec and Triton's binary
tensor data extension; section names are in the test names. Binary data is
packed with `struct`, little-endian, independent of the server's own codec.
"""

from __future__ import annotations

import gzip
import json
import struct

import pytest
from test_api import make_client

import inferscale

INFER = "/v2/models/inferscale/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"


@pytest.fixture
def client():
    return make_client()


def infer_body(**tensor):
    base = {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    return {"inputs": [{**base, **tensor}]}


def binary_request(header: dict, *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A body as the binary extension lays it out: the JSON header, then each tensor's bytes."""
    raw_header = json.dumps(header).encode()
    return raw_header + b"".join(tensors), {HEADER_LENGTH: str(len(raw_header))}


def binary_features(shape, datatype="FP32", size=None) -> dict:
    return {"name": "features", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def split_response(response) -> tuple[dict, bytes]:
    length = int(response.headers[HEADER_LENGTH])
    return json.loads(response.data[:length]), response.data[length:]


def assert_v2_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert fragment in body["error"]


# --- Inference Request / Response JSON Object ----------------------------------------------


def test_inference_response_echoes_id_and_has_every_output_per_row(client):
    body = infer_body(shape=[2, 3], data=[[1, 2, 3], [4, 5, 6]])
    response = client.post(INFER, json={"id": "req-7", **body})
    assert response.status_code == 200
    assert response.content_type == "application/json"
    payload = response.get_json()
    assert payload["id"] == "req-7"
    assert payload["model_name"] == "inferscale" and payload["model_version"] == "1"
    probability, label = payload["outputs"]
    assert probability["name"] == "probability" and probability["datatype"] == "FP64"
    assert probability["shape"] == [2] and len(probability["data"]) == 2
    assert label == {
        "name": "label",
        "datatype": "INT64",
        "shape": [2],
        "data": [int(p >= 0.5) for p in probability["data"]],
    }


def test_inference_response_has_no_id_when_the_request_has_none(client):
    assert "id" not in client.post(INFER, json=infer_body()).get_json()


def test_tensor_data_flat_and_natural_forms_agree(client):
    flat = client.post(INFER, json=infer_body(shape=[2, 3], data=[1, 2, 3, 4, 5, 6]))
    nested = client.post(INFER, json=infer_body(shape=[2, 3], data=[[1, 2, 3], [4, 5, 6]]))
    assert flat.get_json()["outputs"] == nested.get_json()["outputs"]


def test_label_is_one_where_the_probability_reaches_one_half(client):
    # Enough varied rows that both classes appear.
    rows = [[i, -i, 2 * i] for i in range(-2, 2)]
    payload = client.post(INFER, json=infer_body(shape=[4, 3], data=rows)).get_json()
    probability, label = (output["data"] for output in payload["outputs"])
    assert label == [int(p >= 0.5) for p in probability]
    assert set(label) == {0, 1}


def test_tensor_data_types_integer_bool_and_float_inputs_agree(client):
    answers = [
        client.post(INFER, json=infer_body(datatype=datatype, data=data)).get_json()["outputs"]
        for datatype, data in [
            ("INT8", [1, 0, 1]),
            ("UINT64", [1, 0, 1]),
            ("BOOL", [True, False, True]),
            ("FP16", [1.0, 0, 1]),
            ("FP64", [1, 0.0, 1]),
        ]
    ]
    assert all(answer == answers[0] for answer in answers)


@pytest.mark.parametrize(
    "tensor, fragment",
    [
        (dict(shape=[1, 4]), "has 3 values but shape [1, 4] needs 4"),
        (dict(shape=[2, 2], data=[[1, 2, 3], [4]]), "every row"),
        (dict(name="pixels"), "unknown input 'pixels'"),
        (dict(datatype="INT32", data=[1, 2.5, 3]), "is INT32: data element 1 (2.5): Input should be a valid integer"),
        (dict(datatype="UINT8", data=[1, 256, 3]), "is UINT8: data element 1 (256)"),
        (dict(datatype="BOOL", data=[1, 0, 1]), "is BOOL: data element 0 (1): Input should be a valid boolean"),
        (dict(datatype="FP16", data=[1, 70000, 3]), "is FP16: data element 1"),
        (dict(datatype="BYTES", data=["a", "b", "c"]), "datatype BYTES is not accepted"),
        (dict(datatype="fp32"), "datatype"),
        (dict(shape=[5, 1], data=[1, 2, 3, 4, 5]), "batch of 5 rows; at most 4"),
        (dict(shape=[1, 9], data=[1] * 9), "9 features per row"),
        (dict(shape=[0, 3], data=[]), "shape"),
        (dict(shape=[1, 1, 3]), "shape"),
        (dict(data=["a", "b", "c"]), "data"),
        (dict(data=None), "has neither data nor binary_data_size"),
    ],
)
def test_request_input_refusals_are_400_in_the_v2_error_shape(client, tensor, fragment):
    assert_v2_error(client.post(INFER, json=infer_body(**tensor)), 400, fragment)


def test_json_nan_is_refused(client):
    raw = b'{"inputs": [{"name": "features", "shape": [2], "datatype": "FP64", "data": [1, NaN]}]}'
    assert_v2_error(client.post(INFER, data=raw), 400, "finite number")


def test_unknown_fields_are_ignored_as_in_tritons_binary_example(client):
    body = {"model_name": "inferscale", **infer_body(parameters={"vendor": "x"}), "parameters": {"priority": 2}}
    assert client.post(INFER, json=body).status_code == 200


# --- Request Output: requested outputs -----------------------------------------------------


def test_requested_outputs_come_exactly_in_the_order_asked(client):
    body = {**infer_body(), "outputs": [{"name": "label"}, {"name": "probability"}]}
    names = [output["name"] for output in client.post(INFER, json=body).get_json()["outputs"]]
    assert names == ["label", "probability"]
    only = client.post(INFER, json={**infer_body(), "outputs": [{"name": "label"}]}).get_json()
    assert [output["name"] for output in only["outputs"]] == ["label"]


@pytest.mark.parametrize(
    "requested, fragment",
    [
        ([{"name": "x"}], "unknown output 'x'; this model's outputs are 'probability', 'label'"),
        ([{"name": "label"}, {"name": "label"}], "output 'label' is requested twice"),
        ([{"parameters": {}}], "outputs.0.name"),
    ],
)
def test_requested_output_refusals_are_400(client, requested, fragment):
    assert_v2_error(client.post(INFER, json={**infer_body(), "outputs": requested}), 400, fragment)


# --- Content-Type and Content-Encoding -----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},  # what tritonclient.http sends
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "Application/JSON;charset=UTF-8"},
        {"Content-Type": "application/octet-stream"},  # what aiohttp puts on bytes
        {"Content-Type": "application/vnd.example+json"},
        {"Content-Encoding": "identity"},
    ],
)
def test_generic_content_types_are_read_as_inference_requests(client, headers):
    response = client.post(INFER, data=json.dumps(infer_body()), headers=headers)
    assert response.status_code == 200, response.data


@pytest.mark.parametrize(
    "headers, fragment",
    [
        ({"Content-Type": "multipart/form-data; boundary=x"}, "Content-Type 'multipart/form-data'"),
        ({"Content-Type": "text/plain"}, "Content-Type 'text/plain' is not an inference request"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "application/x-www-form-urlencoded"),
        ({"Content-Encoding": "gzip"}, "Content-Encoding 'gzip' is not supported"),
    ],
)
def test_other_content_types_and_encodings_are_415_in_the_v2_error_shape(client, headers, fragment):
    data = json.dumps(infer_body()).encode()
    if "Content-Encoding" in headers:
        data = gzip.compress(data)
    assert_v2_error(client.post(INFER, data=data, headers=headers), 415, fragment)


def test_predict_stays_strict_about_json(client):
    response = client.post("/predict", data='{"features": [1]}')
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]["message"]


# --- Binary Tensor Data Extension ----------------------------------------------------------


def test_binary_extension_example_request_and_response(client):
    # Shaped after the extension's example: binary input, one output asked for as binary.
    body, headers = binary_request(
        {
            "inputs": [binary_features([2, 2], "UINT32", 16)],
            "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
        },
        struct.pack("<4I", 1, 2, 3, 4),
    )
    headers["Content-Type"] = "application/octet-stream"
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200, response.data
    assert response.content_type == "application/octet-stream"
    header, tail = split_response(response)
    [output] = header["outputs"]
    assert output == {"name": "probability", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}}
    assert len(tail) == 16
    as_json = client.post(INFER, json=infer_body(shape=[2, 2], datatype="UINT32", data=[1, 2, 3, 4]))
    assert list(struct.unpack("<2d", tail)) == as_json.get_json()["outputs"][0]["data"]


def test_binary_data_output_sends_every_output_as_binary_in_order(client):
    response = client.post(
        INFER, json={**infer_body(shape=[3, 1], data=[1, 2, 3]), "parameters": {"binary_data_output": True}}
    )
    header, tail = split_response(response)
    assert [output["parameters"]["binary_data_size"] for output in header["outputs"]] == [24, 24]
    assert all("data" not in output for output in header["outputs"])
    probabilities, labels = struct.unpack("<3d", tail[:24]), struct.unpack("<3q", tail[24:])
    assert list(labels) == [int(p >= 0.5) for p in probabilities]


def test_binary_outputs_mix_with_json_outputs(client):
    body = {
        **infer_body(),
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "probability", "parameters": {"binary_data": False}}, {"name": "label"}],
    }
    header, tail = split_response(client.post(INFER, json=body))
    probability, label = header["outputs"]
    assert len(probability["data"]) == 1 and "parameters" not in probability
    assert label["parameters"] == {"binary_data_size": 8} and struct.unpack("<q", tail)[0] in (0, 1)


def test_json_response_when_no_output_is_binary_has_no_header_length(client):
    response = client.post(INFER, json={**infer_body(), "parameters": {"binary_data_output": False}})
    assert response.content_type == "application/json" and HEADER_LENGTH not in response.headers


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/json"])
def test_binary_inputs_read_under_any_generic_content_type(client, content_type):
    body, headers = binary_request({"inputs": [binary_features([1, 3], "FP64", 24)]}, struct.pack("<3d", 1, 2, 3))
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(INFER, data=body, headers=headers)
    assert response.get_json()["outputs"] == client.post(INFER, json=infer_body()).get_json()["outputs"]


def test_bool_binary_input_is_one_byte_per_element(client):
    body, headers = binary_request({"inputs": [binary_features([1, 3], "BOOL", 3)]}, b"\x01\x00\x01")
    as_json = client.post(INFER, json=infer_body(datatype="BOOL", data=[True, False, True]))
    as_binary = client.post(INFER, data=body, headers=headers)
    assert as_binary.get_json()["outputs"] == as_json.get_json()["outputs"]


@pytest.mark.parametrize(
    "header, tail, length, fragment",
    [
        (
            {"inputs": [binary_features([1, 3], size=12)]},
            b"\x00" * 12,
            "many",
            "Inference-Header-Content-Length must be a whole number of bytes, got 'many'",
        ),
        (
            {"inputs": [binary_features([1, 3], size=12)]},
            b"\x00" * 12,
            "9999",
            "Inference-Header-Content-Length is '9999' but the body holds only",
        ),
        (
            {"inputs": [binary_features([1, 3], size=12)]},
            b"\x00" * 8,
            None,
            "binary_data_size add up to 12 bytes, but 8 bytes follow the JSON header",
        ),
        (
            {"inputs": [binary_features([1, 3], size=16)]},
            b"\x00" * 16,
            None,
            "needs 12 bytes, but its binary_data_size is 16",
        ),
        (
            {"inputs": [binary_features([1, 3], size=10)]},
            b"\x00" * 10,
            None,
            "binary_data_size 10 is not a whole number of FP32 elements (4 bytes each)",
        ),
        (infer_body(), b"\x00" * 4, None, "add up to 0 bytes, but 4 bytes follow"),
        (
            {"inputs": [{**binary_features([1, 3], size=12), "data": [1, 2, 3]}]},
            b"\x00" * 12,
            None,
            "has both data and binary_data_size",
        ),
        (
            {"inputs": [binary_features([1, 3], "FP32", 12)]},
            struct.pack("<3f", 1, float("inf"), 3),
            None,
            "element 1 is inf, but must be a finite number",
        ),
        ({"inputs": [binary_features([1, 2], "BOOL", 2)]}, b"\x01\xff", None, "byte 1 is 255, but must be 0 or 1"),
        (
            {"inputs": [binary_features([1, 3], "BYTES", 15)]},
            b"\x01\x00\x00\x00a" * 3,
            None,
            "datatype BYTES is not accepted",
        ),
        ({"inputs": [binary_features([1, 3], size="12")]}, b"\x00" * 12, None, "inputs.0.parameters.binary_data_size"),
        (
            {"inputs": [binary_features([1, 3], size=12)], "parameters": {"binary_data_output": "yes"}},
            b"\x00" * 12,
            None,
            "parameters.binary_data_output",
        ),
    ],
)
def test_binary_inconsistencies_are_400_in_the_v2_error_shape(client, header, tail, length, fragment):
    body, headers = binary_request(header, tail)
    if length is not None:
        headers[HEADER_LENGTH] = length
    assert_v2_error(client.post(INFER, data=body, headers=headers), 400, fragment)


def test_binary_data_size_without_the_header_length_is_400(client):
    body = json.dumps({"inputs": [binary_features([1, 3], size=12)]})
    assert_v2_error(
        client.post(INFER, data=body),
        400,
        "binary_data_size is set but the request has no Inference-Header-Content-Length",
    )


@pytest.mark.parametrize("shape, fragment", [([5, 1], "batch of 5 rows; at most 4"), ([1, 9], "9 features per row")])
def test_limits_hold_for_binary_tensors_too(client, shape, fragment):
    count = shape[0] * shape[1]
    header = {"inputs": [binary_features(shape, "FP32", 4 * count)]}
    body, headers = binary_request(header, b"\x00" * 4 * count)
    assert_v2_error(client.post(INFER, data=body, headers=headers), 400, fragment)


def test_binary_body_beyond_max_body_bytes_is_413(client):
    body, headers = binary_request({"inputs": [binary_features([4, 8], "FP64", 8000)]}, b"\x00" * 8000)
    assert_v2_error(client.post(INFER, data=body, headers=headers), 413, "")


# --- Model Metadata, Server Metadata, health -----------------------------------------------


def test_model_metadata_lists_both_outputs_and_which_datatypes_the_input_takes(client):
    metadata = client.get("/v2/models/inferscale").get_json()
    assert metadata["name"] == "inferscale" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, -1]}]
    assert metadata["outputs"] == [
        {"name": "probability", "datatype": "FP64", "shape": [-1]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    # `properties` is the spec's map of string to string.
    assert metadata["properties"] == {
        "features.accepted_datatypes": "BOOL,UINT8,UINT16,UINT32,UINT64,INT8,INT16,INT32,INT64,FP16,FP32,FP64",
        "features.refused_datatypes": "BYTES",
    }


def test_server_metadata_names_the_binary_tensor_data_extension(client):
    assert client.get("/v2").get_json() == {
        "name": "inferscale",
        "version": inferscale.__version__,
        "extensions": ["binary_tensor_data"],
    }


def test_versioned_routes_and_health(client):
    assert client.post("/v2/models/inferscale/versions/1/infer", json=infer_body()).status_code == 200
    assert client.get("/v2/models/inferscale/versions/1").get_json()["name"] == "inferscale"
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/models/inferscale/ready").get_json() == {"name": "inferscale", "ready": True}


@pytest.mark.parametrize(
    "path, message",
    [
        ("/v2/models/other/infer", "model 'other' not found"),
        ("/v2/models/inferscale/versions/9/infer", "model 'inferscale' has no version '9'"),
    ],
)
def test_unknown_model_or_version_is_404_in_the_v2_error_shape(client, path, message):
    response = client.post(path, json=infer_body())
    assert response.status_code == 404
    assert response.get_json() == {"error": message}
