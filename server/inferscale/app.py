"""The Flask application factory."""

from __future__ import annotations

import os

from flask import Flask
from prometheus_client import CollectorRegistry

from inferscale import multiprocess
from inferscale.api import health, metrics, predict, v2
from inferscale.api.errors import register_error_handlers
from inferscale.metrics import InferenceMetrics
from inferscale.model import Model
from inferscale.runtime import Runtime, attach
from inferscale.service import InferenceService, model_from_settings
from inferscale.settings import Settings


def create_app(settings: Settings | None = None, model: Model | None = None) -> Flask:
    """Build an app; the model starts loading in the background at once."""
    settings = settings or Settings()
    app = Flask("inferscale")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False

    registry = CollectorRegistry()
    service = InferenceService(
        settings, InferenceMetrics(registry), model or model_from_settings(settings)
    )
    attach(app, Runtime(settings, service, registry, os.environ.get(multiprocess.ENV_VAR)))

    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(predict.blueprint)
    app.register_blueprint(v2.blueprint)
    register_error_handlers(app)

    service.start_loading()
    return app
