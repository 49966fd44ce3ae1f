"""The Flask application factory."""

from __future__ import annotations

import os

from flask import Flask, request
from prometheus_client import CollectorRegistry

from inferscale import arrival, multiprocess
from inferscale.api import health, metrics, predict, v2
from inferscale.api.errors import ApiError, register_error_handlers
from inferscale.backend import InferenceBackend
from inferscale.metrics import ModelMetrics, RequestMetrics
from inferscale.runtime import Runtime, attach
from inferscale.service import InferenceService, model_from_settings
from inferscale.settings import Settings

# The admin port serves only these: probes and scrapes get a listener of their
# own that inference traffic and slow clients cannot crowd out.
ADMIN_ENDPOINTS = frozenset({"health.health", "health.ready", "metrics.metrics"})


def create_app(settings: Settings | None = None, backend: InferenceBackend | None = None) -> Flask:
    """Build an app on `backend`; without one, the model loads in this process, in the background."""
    settings = settings or Settings()
    app = Flask("inferscale")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False

    registry = CollectorRegistry()
    if backend is None:
        backend = InferenceService(settings, ModelMetrics(registry), model_from_settings(settings))
        backend.start_loading()
    runtime = Runtime(
        settings, backend, registry, RequestMetrics(registry), os.environ.get(multiprocess.ENV_VAR)
    )
    attach(app, runtime)

    app.before_request(_admin_port_guard(settings.admin_port))
    app.before_request(arrival.receive_body)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(predict.blueprint)
    app.register_blueprint(v2.blueprint)
    register_error_handlers(app)
    return app


def _admin_port_guard(admin_port: int):
    def guard() -> None:
        on_admin_port = request.environ.get("SERVER_PORT") == str(admin_port)
        if on_admin_port and request.endpoint not in ADMIN_ENDPOINTS:
            raise ApiError(
                404, "not_found", f"port {admin_port} serves /health, /ready and /metrics only"
            )

    return guard
