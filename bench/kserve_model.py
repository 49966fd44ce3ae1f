"""inferscale's model behind KServe's Python model server, for bench/vs_kserve.py.

Runs with the benchmark's own KServe venv (never the project's), so it cannot
import inferscale: the arithmetic of server/inferscale/model.py is restated
here, with 0 s of simulated inference. The options are KServe's own:

    kserve-venv/bin/python bench/kserve_model.py --http_port 8081 --workers 2 --enable_grpc false
"""

from __future__ import annotations

import uuid

import numpy as np
from kserve import Model, ModelServer, model_server
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest import server as rest_server
from kserve.protocol.rest.multiprocess import server as multiprocess_server

MODEL_NAME = "inferscale"
INPUT_NAME = "features"
OUTPUT_NAME = "probability"
# server/inferscale/model.py with MAX_FEATURES' default (settings.py).
MAX_FEATURES = 256
HIDDEN_UNITS = 16
WEIGHT_SEED = 20261130
LOOPBACK = "127.0.0.1"


class InferscaleModel(Model):
    def __init__(self):
        super().__init__(MODEL_NAME)
        self.w1: np.ndarray | None = None
        self.w2: np.ndarray | None = None

    def load(self) -> bool:
        rng = np.random.default_rng(WEIGHT_SEED)
        self.w1 = rng.standard_normal((MAX_FEATURES, HIDDEN_UNITS)) / np.sqrt(MAX_FEATURES)
        self.w2 = rng.standard_normal(HIDDEN_UNITS) / np.sqrt(HIDDEN_UNITS)
        self.ready = True
        return self.ready

    # async: KServe awaits a coroutine on the event loop; a plain def would run
    # the same numpy inline anyway, so this is its cheapest path.
    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        rows = self._rows(payload)
        padded = np.zeros((rows.shape[0], MAX_FEATURES))
        padded[:, : rows.shape[1]] = rows
        probability = 1.0 / (1.0 + np.exp(-(np.tanh(padded @ self.w1) @ self.w2)))
        output = InferOutput(OUTPUT_NAME, shape=list(probability.shape), datatype="FP64")
        output.set_data_from_numpy(probability, binary_data=False)
        # KServe's response schema requires an id where the request may have none.
        return InferResponse(payload.id or str(uuid.uuid4()), MODEL_NAME, [output])

    @staticmethod
    def _rows(payload: InferRequest) -> np.ndarray:
        tensor = payload.get_input_by_name(INPUT_NAME)
        if tensor is None:
            raise InvalidInput(f"this model's input is {INPUT_NAME!r}")
        shape = tensor.shape
        batch, width = shape if len(shape) == 2 else (1, shape[0])
        if width > MAX_FEATURES:
            raise InvalidInput(f"{width} features per row; this model accepts at most {MAX_FEATURES}")
        # float64 straight from the JSON numbers, as inferscale does, so both
        # servers compute bit-identical answers whatever the declared datatype.
        return np.asarray(tensor.data, dtype=np.float64).reshape(batch, width)


class LoopbackRESTServer(rest_server.RESTServer):
    """KServe 0.21 hard-codes host="0.0.0.0" for its REST port; the benchmark stays on loopback."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = LOOPBACK


def main() -> None:
    # Both the one-process and the multi-process server build their RESTServer
    # by these module-level names; the spawned workers inherit the bound socket.
    model_server.RESTServer = LoopbackRESTServer
    multiprocess_server.RESTServer = LoopbackRESTServer
    model = InferscaleModel()
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    main()
