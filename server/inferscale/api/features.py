"""The model's one input, `features`: a V2 tensor in, float64 rows of shape (batch, features) out.

The model computes in float64, which every fixed-size datatype converts to (the
64-bit integers beyond 2**53 by rounding). BYTES is refused: its elements are
raw byte strings with no numeric value. JSON data is held to the datatype
(integers in range, true/false, finite numbers the type can hold) and rounded
to it, so a tensor reads the same as JSON and as binary data.
"""

from __future__ import annotations

import reprlib

import numpy as np
from pydantic import ValidationError

from inferscale.api.datatypes import FIXED_SIZE, VARIABLE_SIZE, Datatype
from inferscale.api.errors import ApiError
from inferscale.api.schemas import InferInputTensor

INPUT_NAME = "features"
# Every fixed-size datatype; the rows are read as float64 whatever they came as.
ACCEPTED = tuple(FIXED_SIZE)
REFUSED = VARIABLE_SIZE


def declared_rows(tensor: InferInputTensor) -> tuple[int, int]:
    """(batch, features) as the tensor declares them, before any of its data is read."""
    if tensor.name != INPUT_NAME:
        raise ApiError(
            400,
            "unknown_input",
            f"unknown input {tensor.name!r}; this model's input is {INPUT_NAME!r}",
        )
    if tensor.datatype in REFUSED:
        accepted = ", ".join(ACCEPTED)
        raise ApiError(
            400,
            "unsupported_datatype",
            f"input {tensor.name!r}: datatype {tensor.datatype} is not accepted; it takes {accepted}",
        )
    # One dimension is a single row.
    batch, width = tensor.shape if len(tensor.shape) == 2 else [1, tensor.shape[0]]
    return batch, width


def decode_rows(tensor: InferInputTensor, chunk: memoryview | None) -> np.ndarray:
    """The tensor as float64 rows; `chunk` is its binary data, None when it comes as JSON."""
    batch, width = declared_rows(tensor)
    datatype = FIXED_SIZE[tensor.datatype]
    if chunk is None:
        values = _from_json(tensor, datatype, batch, width)
    else:
        values = _from_binary(tensor, datatype, batch * width, chunk)
    return values.astype(np.float64).reshape(batch, width)


def _from_json(tensor: InferInputTensor, datatype: Datatype, batch: int, width: int) -> np.ndarray:
    if tensor.data is None:
        raise _invalid(f"input {tensor.name!r} has neither data nor binary_data_size")
    flat = _flatten(tensor, tensor.data, batch, width)
    try:
        values = datatype.json_values.validate_python(flat)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise _invalid(
            f"input {tensor.name!r} is {datatype.name}: data element {first['loc'][0]} "
            f"({reprlib.repr(first['input'])}): {first['msg']}"
        ) from None
    return np.asarray(values, dtype=datatype.layout)


def _flatten(tensor: InferInputTensor, data: list, batch: int, width: int) -> list:
    """`data`, the tensor's JSON data, as one flat list."""
    nested = len(tensor.shape) == 2 and data and all(isinstance(row, list) for row in data)
    if nested:
        if len(data) != batch:
            raise _invalid(f"input {tensor.name!r} has {len(data)} rows but shape {tensor.shape} needs {batch}")
        if any(len(row) != width for row in data):
            raise _invalid(f"every row of input {tensor.name!r} must hold {width} values")
        return [value for row in data for value in row]
    if len(data) != batch * width:
        raise _invalid(f"input {tensor.name!r} has {len(data)} values but shape {tensor.shape} needs {batch * width}")
    return data


def _from_binary(tensor: InferInputTensor, datatype: Datatype, count: int, chunk: memoryview) -> np.ndarray:
    if tensor.data is not None:
        raise _invalid(f"input {tensor.name!r} has both data and binary_data_size; send one")
    size = datatype.layout.itemsize
    if len(chunk) % size:
        raise _invalid(
            f"input {tensor.name!r}: binary_data_size {len(chunk)} is not a whole number "
            f"of {datatype.name} elements ({size} bytes each)"
        )
    needed = count * size
    if len(chunk) != needed:
        raise _invalid(
            f"input {tensor.name!r} of shape {tensor.shape} and datatype {datatype.name} "
            f"needs {needed} bytes, but its binary_data_size is {len(chunk)}"
        )
    values = np.frombuffer(chunk, dtype=datatype.layout)
    _check_binary_values(tensor.name, datatype, values)
    return values


def _check_binary_values(name: str, datatype: Datatype, values: np.ndarray) -> None:
    if datatype.layout.kind == "b":
        raw = values.view(np.uint8)
        wrong = np.flatnonzero(raw > 1)
        if wrong.size:
            raise _invalid(f"input {name!r} is BOOL: byte {wrong[0]} is {raw[wrong[0]]}, but must be 0 or 1")
    elif datatype.layout.kind == "f":
        wrong = np.flatnonzero(~np.isfinite(values))
        if wrong.size:
            raise _invalid(
                f"input {name!r} is {datatype.name}: element {wrong[0]} is {values[wrong[0]]}, "
                "but must be a finite number"
            )


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_tensor", message)
