"""POST /predict: the simple JSON route, `{"features": [numbers]}`."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, jsonify

from inferscale.api import inference
from inferscale.api.schemas import PredictRequest
from inferscale.runtime import current_runtime

blueprint = Blueprint("predict", __name__)


@blueprint.post("/predict")
def predict():
    body = inference.parse_body(PredictRequest)
    rows = np.asarray([body.features], dtype=np.float64)
    inference.check_width(rows)
    outcome = inference.run(rows)
    return jsonify(
        model=current_runtime().settings.model_name,
        prediction=float(outcome.value[0]),
        inference_seconds=round(outcome.inference_seconds, 6),
        queue_seconds=round(outcome.queue_seconds, 6),
    )
