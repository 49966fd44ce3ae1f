"""The V2 tensor codec without HTTP: JSON and binary tensor data, every datatype, every refusal.

Requests are written by hand from the Open Inference Protocol's REST spec
("Inference Request JSON Object", "Tensor Data", "Tensor Data Types") and
Triton's "Binary Tensor Data Extension"; binary data is packed with `struct`
in explicit little-endian formats, independent of the server's numpy code.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from inferscale.api import binary_data, features, outputs
from inferscale.api.datatypes import DATATYPE_NAMES, FIXED_SIZE
from inferscale.api.errors import ApiError
from inferscale.api.inference import validate_json
from inferscale.api.schemas import InferInputTensor, InferRequest

# "Tensor Data Types": every datatype, its size in bytes, and its struct format.
SIZES = {
    "BOOL": (1, "?"),
    "UINT8": (1, "B"),
    "UINT16": (2, "H"),
    "UINT32": (4, "I"),
    "UINT64": (8, "Q"),
    "INT8": (1, "b"),
    "INT16": (2, "h"),
    "INT32": (4, "i"),
    "INT64": (8, "q"),
    "FP16": (2, "e"),
    "FP32": (4, "f"),
    "FP64": (8, "d"),
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


def binary_tensor(datatype: str, payload: bytes, shape=(2, 2)) -> tuple[InferInputTensor, memoryview]:
    fields = {
        "name": "features",
        "shape": list(shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(payload)},
    }
    return InferInputTensor.model_validate(fields), memoryview(payload)


def pack(datatype: str, values) -> bytes:
    return struct.pack(f"<{len(values)}{SIZES[datatype][1]}", *values)


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value.message


# --- Tensor Data Types ---------------------------------------------------------------------


def test_tensor_data_types_table_every_fixed_size_type_has_its_size():
    assert set(DATATYPE_NAMES) == {*SIZES, "BYTES"}
    assert set(FIXED_SIZE) == set(SIZES)
    for name, (size, _) in SIZES.items():
        assert FIXED_SIZE[name].layout.itemsize == size, name


def test_tensor_data_types_table_bytes_is_refused_and_named():
    message = refusal(features.decode_rows, tensor(datatype="BYTES", data=["a", "b", "c", "d"]), None)
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
    rows = features.decode_rows(tensor(datatype=datatype, data=values), None)
    assert rows.dtype == np.float64 and rows.shape == (2, 2)
    assert rows.ravel().tolist() == [float(value) for value in values]


@pytest.mark.parametrize(
    "datatype, written",
    [("FP32", "3.4028235e38"), ("FP32", "-3.4028235e38"), ("FP16", "65519"), ("FP16", "-65519.9")],
)
def test_tensor_data_json_a_number_that_rounds_to_the_types_largest_reads_as_in_binary(datatype, written):
    # 3.4028235e38 is FP32's largest as Go, Java and numpy print it: a little past the exact value.
    raw = f'{{"name": "features", "shape": [1], "datatype": "{datatype}", "data": [{written}]}}'
    from_json = features.decode_rows(InferInputTensor.model_validate_json(raw), None)
    largest = math.copysign(float(np.finfo(FIXED_SIZE[datatype].layout).max), float(written))
    payload = np.array([largest], dtype=FIXED_SIZE[datatype].layout).tobytes()
    from_binary = features.decode_rows(*binary_tensor(datatype, payload, shape=(1,)))
    assert from_json.tolist() == from_binary.tolist() == [[largest]]


def test_tensor_data_json_natural_and_flattened_forms_agree():
    flat = features.decode_rows(tensor(data=[1, 2, 3, 4]), None)
    nested = features.decode_rows(tensor(data=[[1, 2], [3, 4]]), None)
    assert flat.tolist() == nested.tolist() == [[1, 2], [3, 4]]


def test_tensor_data_json_one_dimension_is_one_row():
    assert features.decode_rows(tensor(shape=[3], data=[1, 2, 3]), None).tolist() == [[1, 2, 3]]


def test_tensor_data_json_is_rounded_to_its_datatype_as_binary_data_would_be():
    rows = features.decode_rows(tensor(shape=[1], datatype="FP32", data=[0.1]), None)
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
        # Half a step past the largest FP16 (65504 + 32 / 2) rounds to infinity.
        ("FP16", "65520", "65520.0 overflows it (its largest magnitude is 65504)"),
        ("FP16", "-1e5", "-100000.0 overflows it"),
        ("FP32", "1e39", "1e+39 overflows it (its largest magnitude is 3.4028235e+38)"),
        ("FP32", "3.40282357e38", "3.40282357e+38 overflows it"),
        ("FP64", "[1]", "valid number"),
    ],
)
def test_tensor_data_json_must_respect_the_datatype(datatype, element, fragment):
    raw = f'{{"name": "features", "shape": [1], "datatype": "{datatype}", "data": [{element}]}}'
    message = refusal(features.decode_rows, InferInputTensor.model_validate_json(raw), None)
    assert f"input 'features' is {datatype}: data element 0" in message
    assert fragment in message


@pytest.mark.parametrize(
    "fields, fragment",
    [
        (dict(data=[1, 2, 3]), "has 3 values but shape [2, 2] needs 4"),
        (dict(data=[[1, 2], [3, 4], [5, 6]]), "has 3 rows but shape [2, 2] needs 2"),
        (dict(data=[[1, 2], [3]]), "every row of input 'features' must hold 2 values"),
        (dict(shape=[4], data=[[1, 2], [3, 4]]), "has 2 values but shape [4] needs 4"),
        (dict(data=None), "has neither data nor binary_data_size"),
        (dict(name="pixels"), "unknown input 'pixels'; this model's input is 'features'"),
    ],
)
def test_tensor_data_json_must_fill_the_declared_shape(fields, fragment):
    assert fragment in refusal(features.decode_rows, tensor(**fields), None)


# --- Binary Tensor Data Extension: inputs --------------------------------------------------


@pytest.mark.parametrize("datatype", SIZES)
def test_binary_input_every_fixed_size_type_is_little_endian_in_its_native_size(datatype):
    values = EXTREMES[datatype]
    payload = pack(datatype, values)
    assert len(payload) == 4 * SIZES[datatype][0]
    rows = features.decode_rows(*binary_tensor(datatype, payload))
    assert rows.dtype == np.float64
    assert rows.ravel().tolist() == [float(value) for value in values]


@pytest.mark.parametrize("datatype", SIZES)
def test_binary_and_json_data_of_one_tensor_decode_alike(datatype):
    values = EXTREMES[datatype]
    as_json = features.decode_rows(tensor(datatype=datatype, data=values), None)
    as_binary = features.decode_rows(*binary_tensor(datatype, pack(datatype, values)))
    assert np.array_equal(as_json, as_binary)


def test_binary_input_bool_true_is_byte_1_and_false_byte_0():
    rows = features.decode_rows(*binary_tensor("BOOL", b"\x01\x00\x00\x01"))
    assert rows.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "datatype, payload, fragment",
    [
        ("BOOL", b"\x01\x02\x00\x01", "byte 1 is 2, but must be 0 or 1"),
        ("FP32", pack("FP32", [1, math.nan, 0, 0]), "element 1 is nan, but must be a finite number"),
        ("FP64", pack("FP64", [1, 2, 3, -math.inf]), "element 3 is -inf"),
        ("FP16", b"\x00\x7c" + pack("FP16", [1, 2, 3]), "element 0 is inf"),
        ("FP32", pack("FP32", [1, 2, 3, 4])[:-2], "binary_data_size 14 is not a whole number of FP32"),
        ("INT64", pack("INT64", [1, 2, 3]), "needs 32 bytes, but its binary_data_size is 24"),
        ("UINT8", pack("UINT8", [1, 2, 3, 4, 5]), "needs 4 bytes, but its binary_data_size is 5"),
        ("BYTES", struct.pack("<I", 1) + b"a", "datatype BYTES is not accepted"),
    ],
)
def test_binary_input_inconsistencies_are_refused(datatype, payload, fragment):
    assert fragment in refusal(features.decode_rows, *binary_tensor(datatype, payload))


def test_binary_input_with_json_data_too_is_refused():
    both = tensor(data=[1, 2, 3, 4], parameters={"binary_data_size": 32})
    assert "has both data and binary_data_size" in refusal(
        features.decode_rows, both, memoryview(pack("FP64", [1, 2, 3, 4]))
    )


# --- Binary Tensor Data Extension: the body ------------------------------------------------


def test_body_without_inference_header_content_length_is_all_json():
    assert binary_data.split_body(b'{"inputs": []}', None) == (b'{"inputs": []}', None)


def test_inference_header_content_length_splits_the_json_from_the_tensor_data():
    header, tail = binary_data.split_body(b'{"a": 1}\x01\x02\x03', "8")
    assert header == b'{"a": 1}' and bytes(tail) == b"\x01\x02\x03"


def test_inference_header_content_length_may_cover_the_whole_body():
    header, tail = binary_data.split_body(b'{"a": 1}', "8")
    assert header == b'{"a": 1}' and bytes(tail) == b""


def test_inference_header_content_length_may_have_leading_zeros():
    header, tail = binary_data.split_body(b'{"a": 1}\x07', "0008")
    assert header == b'{"a": 1}' and bytes(tail) == b"\x07"


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("abc", "must be a whole number of bytes, got 'abc'"),
        ("-1", "got '-1'"),
        ("8.0", "got '8.0'"),
        ("", "got ''"),
        ("\u0668", "whole number"),  # an Arabic-Indic eight, which int() would read
        ("12", "Inference-Header-Content-Length is '12' but the body holds only 9 bytes"),
        ("9" * 5000, "Inference-Header-Content-Length is '99999"),
    ],
)
def test_inference_header_content_length_must_be_a_byte_count_within_the_body(value, fragment):
    assert fragment in refusal(binary_data.split_body, b'{"a": 1}\x00', value)


def test_binary_inputs_follow_the_json_in_input_order():
    tail = memoryview(b"AAAABBCCCCCC")
    chunks = binary_data.input_chunks([4, None, 2, 6], tail)
    assert [None if chunk is None else bytes(chunk) for chunk in chunks] == [b"AAAA", None, b"BB", b"CCCCCC"]


@pytest.mark.parametrize(
    "sizes, tail, fragment",
    [
        ([16], b"\x00" * 12, "binary_data_size add up to 16 bytes, but 12 bytes follow the JSON header"),
        ([8], b"\x00" * 9, "add up to 8 bytes, but 9 bytes follow"),
        ([None], b"\x00", "add up to 0 bytes, but 1 bytes follow"),
        ([16], None, "binary_data_size is set but the request has no Inference-Header-Content-Length"),
    ],
)
def test_binary_data_sizes_must_add_up_to_what_follows_the_json(sizes, tail, fragment):
    view = None if tail is None else memoryview(tail)
    assert fragment in refusal(binary_data.input_chunks, sizes, view)


def test_json_inputs_behind_a_header_length_are_fine_when_nothing_follows():
    assert binary_data.input_chunks([None], memoryview(b"")) == [None]


def test_response_body_is_the_json_header_then_the_binary_outputs():
    body, headers = binary_data.join_body(b'{"outputs": []}', [b"\x01\x02", b"\x03"])
    assert body == b'{"outputs": []}\x01\x02\x03'
    assert headers == {"Inference-Header-Content-Length": "15"}


# --- Request parameters and requested outputs ----------------------------------------------


def request(**fields) -> InferRequest:
    body = {"inputs": [{"name": "features", "shape": [1], "datatype": "FP64", "data": [1]}], **fields}
    return validate_json(InferRequest, json.dumps(body).encode())


def selection(body: InferRequest) -> list[tuple[str, bool]]:
    return [(delivery.output.name, delivery.binary) for delivery in outputs.select(body)]


def test_request_without_outputs_gets_every_output_as_json():
    assert selection(request()) == [("probability", False), ("label", False)]


def test_an_empty_outputs_list_gets_every_output_as_triton_does():
    assert selection(request(outputs=[])) == [("probability", False), ("label", False)]


def test_requested_outputs_come_exactly_and_in_the_order_asked():
    assert selection(request(outputs=[{"name": "label"}])) == [("label", False)]
    assert selection(request(outputs=[{"name": "label"}, {"name": "probability"}])) == [
        ("label", False),
        ("probability", False),
    ]


def test_binary_data_output_makes_every_output_binary_unless_one_says_otherwise():
    assert selection(request(parameters={"binary_data_output": True})) == [("probability", True), ("label", True)]
    overridden = request(
        parameters={"binary_data_output": True},
        outputs=[{"name": "probability", "parameters": {"binary_data": False}}, {"name": "label"}],
    )
    assert selection(overridden) == [("probability", False), ("label", True)]


def test_binary_data_on_one_output_makes_only_that_one_binary():
    body = request(outputs=[{"name": "probability"}, {"name": "label", "parameters": {"binary_data": True}}])
    assert selection(body) == [("probability", False), ("label", True)]


@pytest.mark.parametrize(
    "requested, fragment",
    [
        ([{"name": "score"}], "unknown output 'score'; this model's outputs are 'probability', 'label'"),
        ([{"name": "label"}, {"name": "label"}], "output 'label' is requested twice"),
        # Triton's classification extension: the client would expect class labels back.
        (
            [{"name": "probability", "parameters": {"classification": 2}}],
            "output 'probability': the classification extension is not supported",
        ),
    ],
)
def test_requested_outputs_must_exist_once(requested, fragment):
    assert fragment in refusal(outputs.select, request(outputs=requested))


def sized(binary_data_size) -> dict:
    tensor = {
        "name": "features",
        "shape": [1],
        "datatype": "FP64",
        "parameters": {"binary_data_size": binary_data_size},
    }
    return dict(inputs=[tensor])


@pytest.mark.parametrize(
    "fields, location",
    [
        (dict(parameters={"binary_data_output": "yes"}), "parameters.binary_data_output"),
        (dict(parameters={"binary_data_output": 1}), "parameters.binary_data_output"),
        (dict(outputs=[{"name": "label", "parameters": {"binary_data": "true"}}]), "outputs.0.parameters.binary_data"),
        (sized("8"), "inputs.0.parameters.binary_data_size"),
        (sized(-8), "inputs.0.parameters.binary_data_size"),
        (sized(8.0), "inputs.0.parameters.binary_data_size"),
        (sized(True), "inputs.0.parameters.binary_data_size"),
    ],
)
def test_binary_extension_parameters_must_have_their_types(fields, location):
    assert location in refusal(request, **fields)


def test_unknown_parameters_and_fields_are_ignored_as_extensions():
    body = request(
        model_name="mymodel",  # as in Triton's binary data example request
        parameters={"priority": 1, "vendor_option": {"nested": [1]}},
        outputs=[{"name": "label", "parameters": {"class_count": 0, "anything": "x"}}],
    )
    assert selection(body) == [("label", False)]


def test_id_is_kept_for_the_response_to_echo():
    assert request(id="42").id == "42"


# --- Response Output -----------------------------------------------------------------------


def test_json_outputs_carry_data_and_no_binary_size():
    probabilities = np.array([0.25, 0.5, 0.75])
    [probability, label] = outputs.select(request())
    assert outputs.encode(probability, probabilities) == (
        {"name": "probability", "datatype": "FP64", "shape": [3], "data": [0.25, 0.5, 0.75]},
        None,
    )
    assert outputs.encode(label, probabilities) == (
        {"name": "label", "datatype": "INT64", "shape": [3], "data": [0, 1, 1]},
        None,
    )


def test_binary_outputs_carry_binary_data_size_and_no_data():
    probabilities = np.array([0.25, 0.75])
    [probability, label] = outputs.select(request(parameters={"binary_data_output": True}))
    tensor_json, raw = outputs.encode(probability, probabilities)
    assert tensor_json == {
        "name": "probability",
        "datatype": "FP64",
        "shape": [2],
        "parameters": {"binary_data_size": 16},
    }
    assert struct.unpack("<2d", raw) == (0.25, 0.75)
    tensor_json, raw = outputs.encode(label, probabilities)
    assert tensor_json["parameters"] == {"binary_data_size": 16} and "data" not in tensor_json
    assert struct.unpack("<2q", raw) == (0, 1)
