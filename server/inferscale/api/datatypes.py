"""The Open Inference Protocol's tensor datatypes: how each lies in binary data and reads in JSON.

The protocol's "Tensor Data Types" table lists thirteen. The binary tensor data
extension lays every fixed-size one out little-endian in its native size, BOOL
as one byte 0 or 1; BYTES elements vary in size (a 4-byte length, then the
bytes), and no tensor of this server is BYTES, so none is ever decoded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, Strict, StrictBool, TypeAdapter


@dataclass(frozen=True)
class Datatype:
    name: str
    # None for BYTES: its elements differ in size, so no numpy dtype lays them out.
    wire: np.dtype | None

    @cached_property
    def json_values(self) -> TypeAdapter[list[Any]]:
        """Validates a flat list of JSON elements of a fixed-size datatype: the right
        kind (true/false, integers, numbers) and a value the type can hold."""
        return TypeAdapter(list[_json_element(self.wire)])


def _json_element(wire: np.dtype) -> Any:
    if wire.kind == "b":
        return StrictBool
    if wire.kind in "iu":
        bounds = np.iinfo(wire)
        return Annotated[int, Strict(), Field(ge=int(bounds.min), le=int(bounds.max))]
    # FP16 and FP32 overflow long before FP64: a number the type cannot hold is
    # refused rather than stored as infinity.
    bounds = np.finfo(wire)
    return Annotated[float, Strict(), Field(allow_inf_nan=False, ge=float(bounds.min), le=float(bounds.max))]


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

# In the order of the protocol's table.
DATATYPES: dict[str, Datatype] = {
    **{name: Datatype(name, np.dtype(code)) for name, code in _FIXED_SIZE.items()},
    "BYTES": Datatype("BYTES", None),
}

# What a request may name; whether a given tensor takes that datatype is the model's call.
DatatypeName = Literal[tuple(DATATYPES)]  # type: ignore[valid-type]
