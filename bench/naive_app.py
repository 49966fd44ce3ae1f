"""The baseline the benchmark compares against: the same model, called inline.

This is how a first inference server is often written: the request thread runs
the model itself, behind one synchronous gunicorn worker. /metrics then waits
behind every queued inference.
"""

from __future__ import annotations

import numpy as np
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from inferscale.model_service import model_from_settings
from inferscale.settings import Settings


def create_app() -> Flask:
    app = Flask("naive")
    model = model_from_settings(Settings())
    model.load()
    registry = CollectorRegistry()
    duration = Histogram("inference_request_duration_seconds", "Request time.", registry=registry)

    @app.post("/predict")
    def predict():
        with duration.time():
            rows = np.asarray([request.get_json()["features"]], dtype=np.float64)
            return jsonify(prediction=float(model.predict(rows)[0]))

    @app.get("/health")
    @app.get("/ready")
    def health():
        return jsonify(status="alive")

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return app
