"""What the protocol layer needs from whatever runs the model: a result, or the model's state.

Two things provide it: `InferenceService` runs the model in this process (the
model process, and tests), and `ModelClient` reaches the pod's model process
from an HTTP worker. The routes cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Outcome:
    """One request's answer, and how long it waited for a slot and then ran."""

    value: Any
    queue_seconds: float
    inference_seconds: float


@dataclass(frozen=True)
class ModelStatus:
    loaded: bool = False
    # The pod is stopping: it finishes what it admitted and takes no more.
    draining: bool = False
    # The model process is about to end and be replaced (an inference ran over
    # its time limit); the pod stays.
    restarting: bool = False
    load_error: str | None = None
    # False while the model process is down (crashed and being restarted).
    reachable: bool = True

    @property
    def ready(self) -> bool:
        return self.reachable and self.loaded and not self.draining and not self.restarting


class InferenceBackend(Protocol):
    def infer(self, rows: np.ndarray) -> Outcome:
        """Score (batch, features) rows; raises an `inferscale.errors.InferenceError`."""

    def status(self) -> ModelStatus: ...
