"""The Flask application factories: the main app, and the admin app of probes and /metrics."""

from __future__ import annotations

import os

from flask import Flask
from prometheus_client import CollectorRegistry

from inferscale import multiprocess
from inferscale.api import exposition, health, predict, v2
from inferscale.api.errors import register_error_handlers
from inferscale.api.json_provider import OrjsonProvider
from inferscale.backend import InferenceBackend
from inferscale.metrics import ModelMetrics, RequestMetrics
from inferscale.model_service import InferenceService, model_from_settings
from inferscale.runtime import Runtime, attach
from inferscale.settings import Settings


def create_app(settings: Settings | None = None, backend: InferenceBackend | None = None) -> Flask:
    """Every route; without a backend, the model loads in this process, in the background."""
    settings = settings or Settings()
    registry = CollectorRegistry()
    if backend is None:
        backend = InferenceService(settings, ModelMetrics(registry), model_from_settings(settings))
        backend.start_loading()
    app = _app(Runtime(settings, backend, registry, RequestMetrics(registry), _multiproc_dir()))
    for blueprint in (health.blueprint, exposition.blueprint, predict.blueprint, v2.blueprint):
        app.register_blueprint(blueprint)
    return app


def create_admin_app(settings: Settings, backend: InferenceBackend) -> Flask:
    """/health, /ready and /metrics only: what the admin port serves."""
    app = _app(Runtime(settings, backend, CollectorRegistry(), None, _multiproc_dir()))
    app.register_blueprint(health.blueprint)
    app.register_blueprint(exposition.blueprint)
    return app


def _app(runtime: Runtime) -> Flask:
    app = Flask("inferscale")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json = OrjsonProvider(app)
    attach(app, runtime)
    register_error_handlers(app)
    return app


def _multiproc_dir() -> str | None:
    return os.environ.get(multiprocess.ENV_VAR)
