"""The Open Inference Protocol (KServe V2) routes in process: every body the spec allows, every refusal.

Bodies are written by hand from the protocol's REST spec; section names are in
the test names.
"""

from __future__ import annotations

import gzip
import json

import pytest

from test_api import make_client

INFER = "/v2/models/inferscale/infer"


@pytest.fixture
def client():
    return make_client()


def infer_body(**tensor):
    base = {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    return {"inputs": [{**base, **tensor}]}


def assert_v2_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert fragment in body["error"]


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
    assert label == {"name": "label", "datatype": "INT64", "shape": [2],
                     "data": [int(p >= 0.5) for p in probability["data"]]}


def test_inference_response_has_no_id_when_the_request_has_none(client):
    assert "id" not in client.post(INFER, json=infer_body()).get_json()


def test_v2_flat_and_nested_data_agree(client):
    flat = client.post("/v2/models/inferscale/infer", json=infer_body(shape=[2, 3], data=[1, 2, 3, 4, 5, 6]))
    nested = client.post("/v2/models/inferscale/infer", json=infer_body(shape=[2, 3], data=[[1, 2, 3], [4, 5, 6]]))
    assert flat.get_json()["outputs"] == nested.get_json()["outputs"]


def test_label_is_one_where_the_probability_reaches_one_half(client):
    # Enough varied rows that both classes appear.
    rows = [[i, -i, 2 * i] for i in range(-2, 2)]
    payload = client.post(INFER, json=infer_body(shape=[4, 3], data=rows)).get_json()
    probability, label = (output["data"] for output in payload["outputs"])
    assert label == [int(p >= 0.5) for p in probability]
    assert set(label) == {0, 1}


def test_v2_versioned_route_and_metadata(client):
    assert client.post("/v2/models/inferscale/versions/1/infer", json=infer_body()).status_code == 200
    metadata = client.get("/v2/models/inferscale").get_json()
    assert metadata["name"] == "inferscale" and metadata["versions"] == ["1"]
    assert metadata["inputs"][0]["name"] == "features"
    assert client.get("/v2").get_json()["name"] == "inferscale"
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
def test_v2_unknown_model_or_version_is_404_in_v2_error_shape(client, path, message):
    response = client.post(path, json=infer_body())
    assert response.status_code == 404
    assert response.get_json() == {"error": message}


def test_tensor_data_types_integer_bool_and_float_inputs_agree(client):
    answers = [
        client.post(INFER, json=infer_body(datatype=datatype, data=data)).get_json()["outputs"]
        for datatype, data in [("INT8", [1, 0, 1]), ("UINT64", [1, 0, 1]), ("BOOL", [True, False, True]),
                               ("FP16", [1.0, 0, 1]), ("FP64", [1, 0.0, 1])]
    ]
    assert all(answer == answers[0] for answer in answers)


@pytest.mark.parametrize(
    "tensor, fragment",
    [
        (dict(shape=[1, 4]), "has 3 values but shape [1, 4] needs 4"),
        (dict(shape=[2, 2], data=[[1, 2, 3], [4]]), "every row"),
        (dict(name="pixels"), "unknown input 'pixels'"),
        (dict(datatype="INT32", data=[1, 2.5, 3]),
         "is INT32: data element 1 (2.5): Input should be a valid integer"),
        (dict(datatype="UINT8", data=[1, 256, 3]), "is UINT8: data element 1 (256)"),
        (dict(datatype="BOOL", data=[1, 0, 1]),
         "is BOOL: data element 0 (1): Input should be a valid boolean"),
        (dict(datatype="FP16", data=[1, 70000, 3]), "is FP16: data element 1"),
        (dict(datatype="BYTES", data=["a", "b", "c"]), "datatype BYTES is not accepted"),
        (dict(datatype="fp32"), "datatype"),
        (dict(shape=[5, 1], data=[1, 2, 3, 4, 5]), "batch of 5 rows; at most 4"),
        (dict(shape=[1, 9], data=[1] * 9), "9 features per row"),
        (dict(shape=[0, 3], data=[]), "shape"),
        (dict(shape=[1, 1, 3]), "shape"),
        (dict(data=["a", "b", "c"]), "data"),
    ],
)
def test_request_input_refusals_are_400_in_the_v2_error_shape(client, tensor, fragment):
    assert_v2_error(client.post(INFER, json=infer_body(**tensor)), 400, fragment)


def test_json_nan_is_refused(client):
    raw = b'{"inputs": [{"name": "features", "shape": [2], "datatype": "FP64", "data": [1, NaN]}]}'
    assert_v2_error(client.post(INFER, data=raw), 400, "finite number")


def test_model_metadata_lists_both_outputs_and_which_datatypes_the_input_takes(client):
    metadata = client.get("/v2/models/inferscale").get_json()
    assert metadata["name"] == "inferscale" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, -1]}]
    assert metadata["outputs"] == [{"name": "probability", "datatype": "FP64", "shape": [-1]},
                                   {"name": "label", "datatype": "INT64", "shape": [-1]}]
    # `properties` is the spec's map of string to string.
    assert metadata["properties"] == {
        "features.accepted_datatypes":
            "BOOL,UINT8,UINT16,UINT32,UINT64,INT8,INT16,INT32,INT64,FP16,FP32,FP64",
        "features.refused_datatypes": "BYTES",
    }


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
