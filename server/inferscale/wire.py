"""Messages between the HTTP workers and the model process, as msgpack arrays.

msgpack frames itself (a streaming Unpacker yields whole messages from any
split of the byte stream) and decodes to plain data only, so a message can
never run code, unlike pickle. Arrays travel as raw little-endian float64.

worker -> model   [INFER, call_id, batch, width, rows]
model -> worker   [RESULT, call_id, values, queue_seconds, inference_seconds]
                  [FAILURE, call_id, kind, message]
                  [STATUS, loaded, draining, restarting, load_error]   (on connect and on every change)
"""

from __future__ import annotations

from collections.abc import Iterator

import msgpack
import numpy as np

from inferscale.backend import ModelStatus, Outcome
from inferscale.errors import (
    InferenceError,
    InferenceFailed,
    InferenceLost,
    InferenceTimedOut,
    ModelUnavailable,
    Overloaded,
    ShuttingDown,
)

INFER, RESULT, FAILURE, STATUS = range(4)
FLOAT64 = np.dtype("<f8")

# Every error that crosses the socket, by a stable name.
FAILURE_KINDS: dict[str, type[InferenceError]] = {
    "overloaded": Overloaded,
    "shutting_down": ShuttingDown,
    "model_unavailable": ModelUnavailable,
    "failed": InferenceFailed,
    "timed_out": InferenceTimedOut,
    "lost": InferenceLost,
}
_KIND_OF = {error: kind for kind, error in FAILURE_KINDS.items()}


def infer(call_id: int, rows: np.ndarray) -> bytes:
    batch, width = rows.shape
    return msgpack.packb([INFER, call_id, batch, width, rows.astype(FLOAT64, copy=False).tobytes()])


def rows_of(message: list) -> np.ndarray:
    _, _, batch, width, data = message
    return np.frombuffer(data, dtype=FLOAT64).reshape(batch, width)


def result(call_id: int, outcome: Outcome) -> bytes:
    values = np.asarray(outcome.value, dtype=FLOAT64)
    return msgpack.packb([RESULT, call_id, values.tobytes(), outcome.queue_seconds, outcome.inference_seconds])


def outcome_of(message: list) -> Outcome:
    _, _, values, queue_seconds, inference_seconds = message
    return Outcome(np.frombuffer(values, dtype=FLOAT64), queue_seconds, inference_seconds)


def failure(call_id: int, error: InferenceError) -> bytes:
    kind = _KIND_OF.get(type(error), "failed")
    return msgpack.packb([FAILURE, call_id, kind, str(error)])


def error_of(message: list) -> InferenceError:
    _, _, kind, text = message
    return FAILURE_KINDS.get(kind, InferenceFailed)(text)


def status(state: ModelStatus) -> bytes:
    return msgpack.packb([STATUS, state.loaded, state.draining, state.restarting, state.load_error])


def status_of(message: list) -> ModelStatus:
    _, loaded, draining, restarting, load_error = message
    return ModelStatus(loaded=loaded, draining=draining, restarting=restarting, load_error=load_error)


class Reader:
    """Whole messages out of a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        # Both ends are ours and the HTTP side has bounded every request, so
        # the limit is msgpack's largest (0: 2 GiB), not its 100 MiB default,
        # which a batch the settings allow can exceed (Settings checks that the
        # largest batch fits in 2 GiB).
        self._unpacker = msgpack.Unpacker(use_list=True, raw=False, max_buffer_size=0)

    def feed(self, data: bytes) -> Iterator[list]:
        self._unpacker.feed(data)
        yield from self._unpacker
