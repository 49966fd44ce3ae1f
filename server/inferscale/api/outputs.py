"""The model's outputs, which of them a request gets, and how each goes back: JSON or binary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inferscale.api.datatypes import FIXED_SIZE, Datatype
from inferscale.api.errors import ApiError
from inferscale.api.schemas import InferRequest
from inferscale.model import label


@dataclass(frozen=True)
class Output:
    name: str
    datatype: Datatype
    # One value per row, from the model's probabilities.
    compute: Callable[[np.ndarray], np.ndarray]


OUTPUTS = {
    output.name: output
    for output in (
        Output("probability", FIXED_SIZE["FP64"], lambda probabilities: probabilities),
        Output("label", FIXED_SIZE["INT64"], label),
    )
}


@dataclass(frozen=True)
class Delivery:
    output: Output
    binary: bool


def select(body: InferRequest) -> list[Delivery]:
    """The outputs to send, in order, and whether each goes as binary data.

    No `outputs`, or an empty list as Triton takes it, means all of them. A
    request-level `binary_data_output` sets the default that an output's own
    `binary_data` overrides (binary tensor data extension).
    """
    default = bool(body.parameters and body.parameters.binary_data_output)
    if not body.outputs:
        return [Delivery(output, default) for output in OUTPUTS.values()]
    deliveries: list[Delivery] = []
    for requested in body.outputs:
        if requested.name not in OUTPUTS:
            known = ", ".join(repr(name) for name in OUTPUTS)
            raise ApiError(
                400,
                "unknown_output",
                f"unknown output {requested.name!r}; this model's outputs are {known}",
            )
        if any(delivery.output.name == requested.name for delivery in deliveries):
            raise ApiError(400, "duplicate_output", f"output {requested.name!r} is requested twice")
        extra = requested.parameters.model_extra if requested.parameters else None
        if extra and "classification" in extra:
            # tritonclient's class_count: it would expect class labels and get the raw tensor.
            raise ApiError(
                400,
                "unsupported_parameter",
                f"output {requested.name!r}: the classification extension is not supported by this server",
            )
        own = requested.parameters.binary_data if requested.parameters else None
        deliveries.append(Delivery(OUTPUTS[requested.name], default if own is None else own))
    return deliveries


def encode(delivery: Delivery, probabilities: np.ndarray) -> tuple[dict, bytes | None]:
    """The output's `$response_output` object, and its raw bytes when it goes as binary data."""
    output = delivery.output
    values = output.compute(probabilities)
    tensor = {"name": output.name, "datatype": output.datatype.name, "shape": list(values.shape)}
    if not delivery.binary:
        return {**tensor, "data": values.tolist()}, None
    raw = values.astype(output.datatype.layout).tobytes()
    return {**tensor, "parameters": {"binary_data_size": len(raw)}}, raw
