"""The model's outputs, which of them a request gets, and how each goes back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inferscale.api.datatypes import DATATYPES, Datatype
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
        Output("probability", DATATYPES["FP64"], lambda probabilities: probabilities),
        Output("label", DATATYPES["INT64"], label),
    )
}


def select(body: InferRequest) -> list[Output]:
    """The outputs to send, in order.

    No `outputs`, or an empty list as Triton takes it, means all of them.
    """
    if not body.outputs:
        return list(OUTPUTS.values())
    selected: list[Output] = []
    for requested in body.outputs:
        if requested.name not in OUTPUTS:
            known = ", ".join(repr(name) for name in OUTPUTS)
            raise ApiError(
                400,
                "unknown_output",
                f"unknown output {requested.name!r}; this model's outputs are {known}",
            )
        if any(output.name == requested.name for output in selected):
            raise ApiError(400, "duplicate_output", f"output {requested.name!r} is requested twice")
        selected.append(OUTPUTS[requested.name])
    return selected


def encode(output: Output, probabilities: np.ndarray) -> dict:
    """The output's `$response_output` object."""
    values = output.compute(probabilities)
    return {
        "name": output.name,
        "datatype": output.datatype.name,
        "shape": list(values.shape),
        "data": values.tolist(),
    }
