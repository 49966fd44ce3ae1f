"""A client written by others against real gunicorn: NVIDIA's tritonclient, unmodified.

tritonclient.http sends no Content-Type, asks for binary outputs unless told
otherwise, and lays binary inputs out as Triton's binary tensor data extension
says; tritonclient.http.aio (aiohttp) labels the same bodies
application/octet-stream. If the server reads what these send, standard
clients work.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

MODEL = "inferscale"
FAST = {"INFERENCE_DURATION_SECONDS": "0"}
# Small whole numbers that every numeric datatype, BOOL included, holds exactly.
ROWS = [[1, 0, 1], [0, 1, 1]]
NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


@pytest.fixture
def server(start_server):
    return start_server(FAST, workers=1)


@pytest.fixture
def client(server):
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def features(datatype: str, binary: bool, rows=ROWS) -> httpclient.InferInput:
    tensor = httpclient.InferInput("features", [len(rows), len(rows[0])], datatype)
    tensor.set_data_from_numpy(np.array(rows, dtype=NUMPY[datatype]), binary_data=binary)
    return tensor


def expected(server) -> list[float]:
    """The model's probabilities for ROWS, by way of this server's own /predict route."""
    return [server.predict(row).json()["prediction"] for row in ROWS]


def test_health_and_metadata_through_tritonclient(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(MODEL)
    assert [output["name"] for output in metadata["outputs"]] == ["probability", "label"]
    assert metadata["properties"]["features.refused_datatypes"] == "BYTES"


def test_json_inputs_and_json_outputs(server, client):
    outputs = [httpclient.InferRequestedOutput(name, binary_data=False) for name in ("probability", "label")]
    result = client.infer(MODEL, [features("FP32", binary=False)], outputs=outputs, request_id="r1")
    response = result.get_response()
    assert response["id"] == "r1"
    assert all("data" in output for output in response["outputs"])
    np.testing.assert_allclose(result.as_numpy("probability"), expected(server))
    assert result.as_numpy("label").tolist() == [int(p >= 0.5) for p in expected(server)]


def test_binary_inputs_and_default_binary_outputs_for_every_numeric_datatype(server, client):
    # Without `outputs` tritonclient asks for all of them as binary data.
    for datatype in NUMERIC:
        result = client.infer(MODEL, [features(datatype, binary=True)])
        response = result.get_response()
        sizes = [output["parameters"]["binary_data_size"] for output in response["outputs"]]
        assert sizes == [16, 16], datatype
        np.testing.assert_allclose(result.as_numpy("probability"), expected(server), err_msg=datatype)
        assert result.as_numpy("label").dtype == np.int64


def test_json_inputs_for_every_numeric_datatype(server, client):
    for datatype in NUMERIC:
        result = client.infer(MODEL, [features(datatype, binary=False)])
        np.testing.assert_allclose(result.as_numpy("probability"), expected(server), err_msg=datatype)


def test_requested_outputs_only_those_in_that_order(client):
    outputs = [
        httpclient.InferRequestedOutput("label"),
        httpclient.InferRequestedOutput("probability", binary_data=False),
    ]
    result = client.infer(MODEL, [features("INT64", binary=True)], outputs=outputs)
    response = result.get_response()
    assert [output["name"] for output in response["outputs"]] == ["label", "probability"]
    assert "binary_data_size" in response["outputs"][0]["parameters"] and "data" in response["outputs"][1]
    only_label = client.infer(
        MODEL, [features("FP64", binary=True)], outputs=[httpclient.InferRequestedOutput("label")]
    )
    assert only_label.as_numpy("probability") is None
    assert only_label.as_numpy("label").shape == (2,)


def test_refusals_reach_tritonclient_as_its_exception_with_our_message(client):
    with pytest.raises(InferenceServerException, match="datatype BYTES is not accepted"):
        tensor = httpclient.InferInput("features", [1, 2], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=np.object_), binary_data=True)
        client.infer(MODEL, [tensor])
    with pytest.raises(InferenceServerException, match="unknown output 'score'"):
        client.infer(MODEL, [features("FP32", binary=True)], outputs=[httpclient.InferRequestedOutput("score")])
    with pytest.raises(InferenceServerException, match="classification extension is not supported"):
        classes = [httpclient.InferRequestedOutput("probability", class_count=2)]
        client.infer(MODEL, [features("FP32", binary=True)], outputs=classes)


def test_the_aiohttp_client_labelled_octet_stream_is_read_too(server):
    async def infer(binary: bool):
        async with aioclient.InferenceServerClient(url=server.url.removeprefix("http://")) as client:
            tensor = aioclient.InferInput("features", [2, 3], "FP32")
            tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float32), binary_data=binary)
            return await client.infer(MODEL, [tensor])

    for binary in (False, True):
        result = asyncio.run(infer(binary))
        np.testing.assert_allclose(result.as_numpy("probability"), expected(server))
