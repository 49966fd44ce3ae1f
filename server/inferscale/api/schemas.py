"""Request bodies as pydantic models: one place says what a valid body is."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from inferscale.api.datatypes import DatatypeName

# strict: true and "1" are not numbers; allow_inf_nan: JSON's NaN/Infinity
# extensions would poison the model's arithmetic.
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[FiniteNumber] = Field(min_length=1)


# Open Inference Protocol bodies. Unknown fields and parameters are ignored, as
# Triton and KServe do: the protocol lets servers define extensions, and Triton's
# own binary-data example sends a "model_name" field the schema does not list.
# The binary tensor data extension's parameters, though, must have their types.

Dimension = Annotated[int, Field(strict=True, ge=1)]
ByteCount = Annotated[int, Field(strict=True, ge=0)]


class InputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data_size: ByteCount | None = None


class InferInputTensor(BaseModel):
    name: str = Field(min_length=1)
    shape: list[Dimension] = Field(min_length=1, max_length=2)
    datatype: DatatypeName
    parameters: InputParameters | None = None
    # Row-major, flat or one list per row; what an element may be depends on the
    # datatype, which the tensor codec checks. None when the data is binary.
    data: list[Any] | None = None

    @property
    def binary_data_size(self) -> int | None:
        return self.parameters.binary_data_size if self.parameters else None


class OutputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data: StrictBool | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: OutputParameters | None = None


class RequestParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data_output: StrictBool | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: RequestParameters | None = None
    inputs: list[InferInputTensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None
