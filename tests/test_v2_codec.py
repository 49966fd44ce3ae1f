"""The V2 tensor codec without HTTP: JSON tensor data, every datatype, every refusal.

Requests are written by hand from the Open Inference Protocol's REST spec
("Inference Request JSON Object", "Tensor Data", "Tensor Data Types").
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from inferscale.api import features, outputs
from inferscale.api.datatypes import DATATYPES
from inferscale.api.errors import ApiError
from inferscale.api.inference import validate_json
from inferscale.api.schemas import InferInputTensor, InferRequest

# "Tensor Data Types": every datatype, its size in bytes, and its struct format.
SIZES = {
    "BOOL": (1, "?"), "UINT8": (1, "B"), "UINT16": (2, "H"), "UINT32": (4, "I"), "UINT64": (8, "Q"),
    "INT8": (1, "b"), "INT16": (2, "h"), "INT32": (4, "i"), "INT64": (8, "q"),
    "FP16": (2, "e"), "FP32": (4, "f"), "FP64": (8, "d"),
}
# Two rows of two values per datatype, reaching both ends of its range where that is exact.
EXTREMES = {
    "BOOL": [True, False, False, True],
    "UINT8": [0, 255, 1, 2],
    "UINT16": [0, 65535, 1, 2],
    "UINT32": [0, 4294967295, 1, 2],
    "UINT64": [0, 2**53, 1, 2],
    "INT8": [-128, 127, 0, -1],
    "INT16": [-32768, 32767, 0, -1],
    "INT32": [-(2**31), 2**31 - 1, 0, -1],
    "INT64": [-(2**53), 2**53, 0, -1],
    "FP16": [-65504.0, 65504.0, 0.5, -0.25],
    "FP32": [-3.4028234663852886e38, 3.4028234663852886e38, 0.5, -0.25],
    "FP64": [-1.0e308, 1.0e308, 0.5, -0.25],
}


def tensor(**fields) -> InferInputTensor:
    """A $request_input, parsed from JSON text as the server parses it."""
    base = {"name": "features", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}
    return InferInputTensor.model_validate_json(json.dumps({**base, **fields}))


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value.message


# --- Tensor Data Types ---------------------------------------------------------------------


def test_tensor_data_types_table_every_fixed_size_type_has_its_size():
    assert set(DATATYPES) == {*SIZES, "BYTES"}
    for name, (size, _) in SIZES.items():
        assert DATATYPES[name].wire.itemsize == size, name


def test_tensor_data_types_table_bytes_is_refused_and_named():
    message = refusal(features.decode_rows, tensor(datatype="BYTES", data=["a", "b", "c", "d"]))
    assert "datatype BYTES is not accepted" in message
    assert "BOOL" in message and "FP64" in message


def test_unknown_datatype_is_refused_by_the_request_schema():
    body = {"inputs": [{"name": "features", "shape": [1], "datatype": "BF16", "data": [1]}]}
    message = refusal(validate_json, InferRequest, json.dumps(body).encode())
    assert "inputs.0.datatype" in message and "'FP16'" in message


# --- Tensor Data: JSON ---------------------------------------------------------------------


@pytest.mark.parametrize("datatype", SIZES)
def test_tensor_data_json_every_fixed_size_type_becomes_float64_rows(datatype):
    values = EXTREMES[datatype]
    rows = features.decode_rows(tensor(datatype=datatype, data=values))
    assert rows.dtype == np.float64 and rows.shape == (2, 2)
    assert rows.ravel().tolist() == [float(value) for value in values]


def test_tensor_data_json_natural_and_flattened_forms_agree():
    flat = features.decode_rows(tensor(data=[1, 2, 3, 4]))
    nested = features.decode_rows(tensor(data=[[1, 2], [3, 4]]))
    assert flat.tolist() == nested.tolist() == [[1, 2], [3, 4]]


def test_tensor_data_json_one_dimension_is_one_row():
    assert features.decode_rows(tensor(shape=[3], data=[1, 2, 3])).tolist() == [[1, 2, 3]]


def test_tensor_data_json_is_rounded_to_its_datatype_as_binary_data_would_be():
    rows = features.decode_rows(tensor(shape=[1], datatype="FP32", data=[0.1]))
    assert rows[0, 0] == struct.unpack("<f", struct.pack("<f", 0.1))[0] != 0.1


@pytest.mark.parametrize(
    "datatype, element, fragment",
    [
        ("INT8", "128", "less than or equal to 127"),
        ("INT8", "-129", "greater than or equal to -128"),
        ("UINT8", "-1", "greater than or equal to 0"),
        ("UINT16", "65536", "less than or equal to 65535"),
        ("UINT64", "18446744073709551616", "less than or equal to 18446744073709551615"),
        ("INT64", "-9223372036854775809", "greater than or equal to -9223372036854775808"),
        ("INT32", "2.5", "valid integer"),
        ("INT32", "1.0", "valid integer"),
        ("INT32", "true", "valid integer"),
        ("UINT8", '"1"', "valid integer"),
        ("BOOL", "1", "valid boolean"),
        ("BOOL", '"true"', "valid boolean"),
        ("FP32", '"1.5"', "valid number"),
        ("FP32", "false", "valid number"),
        ("FP64", "null", "valid number"),
        ("FP64", "NaN", "finite number"),
        ("FP64", "Infinity", "finite number"),
        ("FP64", "1e400", "finite number"),
        ("FP16", "65520", "less than or equal to 65504"),
        ("FP16", "-1e5", "greater than or equal to -65504"),
        ("FP32", "1e39", "less than or equal to 3402823466385288"),
        ("FP64", "[1]", "valid number"),
    ],
)
def test_tensor_data_json_must_respect_the_datatype(datatype, element, fragment):
    raw = f'{{"name": "features", "shape": [1], "datatype": "{datatype}", "data": [{element}]}}'
    message = refusal(features.decode_rows, InferInputTensor.model_validate_json(raw))
    assert f"input 'features' is {datatype}: data element 0" in message
    assert fragment in message


@pytest.mark.parametrize(
    "fields, fragment",
    [
        (dict(data=[1, 2, 3]), "has 3 values but shape [2, 2] needs 4"),
        (dict(data=[[1, 2], [3, 4], [5, 6]]), "has 3 rows but shape [2, 2] needs 2"),
        (dict(data=[[1, 2], [3]]), "every row of input 'features' must hold 2 values"),
        (dict(shape=[4], data=[[1, 2], [3, 4]]), "has 2 values but shape [4] needs 4"),
        (dict(name="pixels"), "unknown input 'pixels'; this model's input is 'features'"),
    ],
)
def test_tensor_data_json_must_fill_the_declared_shape(fields, fragment):
    assert fragment in refusal(features.decode_rows, tensor(**fields))


# --- Request Output: requested outputs -----------------------------------------------------


def request(**fields) -> InferRequest:
    body = {"inputs": [{"name": "features", "shape": [1], "datatype": "FP64", "data": [1]}], **fields}
    return validate_json(InferRequest, json.dumps(body).encode())


def selection(body: InferRequest) -> list[str]:
    return [output.name for output in outputs.select(body)]


def test_request_without_outputs_gets_every_output():
    assert selection(request()) == ["probability", "label"]


def test_an_empty_outputs_list_gets_every_output_as_triton_does():
    assert selection(request(outputs=[])) == ["probability", "label"]


def test_requested_outputs_come_exactly_and_in_the_order_asked():
    assert selection(request(outputs=[{"name": "label"}])) == ["label"]
    assert selection(request(outputs=[{"name": "label"}, {"name": "probability"}])) == [
        "label", "probability"
    ]


@pytest.mark.parametrize(
    "requested, fragment",
    [
        ([{"name": "score"}], "unknown output 'score'; this model's outputs are 'probability', 'label'"),
        ([{"name": "label"}, {"name": "label"}], "output 'label' is requested twice"),
    ],
)
def test_requested_outputs_must_exist_once(requested, fragment):
    assert fragment in refusal(outputs.select, request(outputs=requested))


def test_id_is_kept_for_the_response_to_echo():
    assert request(id="42").id == "42"


# --- Response Output -----------------------------------------------------------------------


def test_outputs_carry_their_datatype_shape_and_data():
    probabilities = np.array([0.25, 0.5, 0.75])
    assert outputs.encode(outputs.OUTPUTS["probability"], probabilities) == {
        "name": "probability", "datatype": "FP64", "shape": [3], "data": [0.25, 0.5, 0.75]
    }
    assert outputs.encode(outputs.OUTPUTS["label"], probabilities) == {
        "name": "label", "datatype": "INT64", "shape": [3], "data": [0, 1, 1]
    }
