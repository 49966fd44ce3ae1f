"""Request bodies as pydantic models: one place says what a valid body is."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from inferscale.api.datatypes import DatatypeName

# strict: true and "1" are not numbers; allow_inf_nan: JSON's NaN/Infinity
# extensions would poison the model's arithmetic.
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[FiniteNumber] = Field(min_length=1)


class InferInputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(strict=True, ge=1)]] = Field(min_length=1, max_length=2)
    datatype: DatatypeName
    parameters: dict[str, Any] | None = None
    # Row-major, flat or one list per row; what an element may be depends on the
    # datatype, which the tensor codec checks.
    data: list[Any]


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
