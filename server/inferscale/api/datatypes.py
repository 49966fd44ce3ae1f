"""The Open Inference Protocol's tensor datatypes: how each lies in binary data and reads in JSON.

The protocol's "Tensor Data Types" table lists thirteen. The binary tensor data
extension lays every fixed-size one out little-endian in its native size, BOOL
as one byte 0 or 1; BYTES elements vary in size (a 4-byte length, then the
bytes), and no tensor of this server is BYTES, so none is ever decoded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import AfterValidator, Field, Strict, StrictBool, TypeAdapter


@dataclass(frozen=True)
class Datatype:
    """A fixed-size datatype, the only kind a tensor is decoded or encoded in."""

    name: str
    layout: np.dtype

    @cached_property
    def json_values(self) -> TypeAdapter[list[Any]]:
        """Validates a flat list of JSON elements of a fixed-size datatype: the right
        kind (true/false, integers, numbers) and a value the type can hold."""
        return TypeAdapter(_json_list(self.layout))


def _json_list(wire: np.dtype) -> Any:
    """The type of a list of JSON elements of `wire`, built at run time for pydantic."""
    if wire.kind == "b":
        return list[StrictBool]
    if wire.kind in "iu":
        ints = np.iinfo(wire)
        return list[Annotated[int, Strict(), Field(ge=int(ints.min), le=int(ints.max))]]
    finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]
    if wire.itemsize == np.dtype(float).itemsize:
        return list[finite]  # JSON's numbers are FP64: past its range, the parser gave infinity
    # FP16 and FP32 overflow long before FP64: a number the type cannot hold is
    # refused rather than stored as infinity.
    return list[Annotated[finite, AfterValidator(_Overflow(wire))]]


class _Overflow:
    """Refuses a number that `wire` rounds to infinity. A JSON number is rounded
    to the type's nearest value, so anything less than half a step past the
    largest value is that value: FP32's largest as Go, Java and numpy print it
    (3.4028235e38) lies a little past it, and must be accepted."""

    def __init__(self, wire: np.dtype) -> None:
        largest = np.finfo(wire).max
        step = float(largest) - float(np.nextafter(largest, wire.type(0)))
        self.largest = float(largest)
        self.limit = self.largest + step / 2

    def __call__(self, value: float) -> float:
        if abs(value) >= self.limit:
            raise ValueError(f"{value!r} overflows it (its largest magnitude is {self.largest:.8g})")
        return value


# numpy's codes for the binary extension's layouts, all explicitly little-endian.
_FIXED_SIZE = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}

FIXED_SIZE: dict[str, Datatype] = {name: Datatype(name, np.dtype(code)) for name, code in _FIXED_SIZE.items()}
# Elements that differ in size: no numpy dtype lays them out.
VARIABLE_SIZE = ("BYTES",)
# In the order of the protocol's table.
DATATYPE_NAMES = (*FIXED_SIZE, *VARIABLE_SIZE)

# What a request may name; whether a given tensor takes that datatype is the model's call.
# Spelled out for type checkers, in the same order as DATATYPE_NAMES.
DatatypeName = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
if get_args(DatatypeName) != DATATYPE_NAMES:
    raise AssertionError("DatatypeName must list DATATYPE_NAMES, in order")
