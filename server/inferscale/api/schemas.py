"""Request bodies as pydantic models: one place says what a valid body is."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# strict: true and "1" are not numbers; allow_inf_nan: JSON's NaN/Infinity
# extensions would poison the model's arithmetic.
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[FiniteNumber] = Field(min_length=1)


class Datatype(str, Enum):
    """The Open Inference Protocol's numeric tensor types this model accepts."""

    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"

    @property
    def is_integer(self) -> bool:
        return not self.value.startswith("FP")


class InferInputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(strict=True, ge=1)]] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    # Row-major flat data, or one level of nesting per row.
    data: list[FiniteNumber] | list[list[FiniteNumber]]


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInputTensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None
