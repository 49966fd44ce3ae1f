"""What one app instance serves with, kept on the Flask app instead of in globals."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from prometheus_client import CollectorRegistry

from inferscale.backend import InferenceBackend
from inferscale.metrics import RequestMetrics
from inferscale.settings import Settings

EXTENSION = "inferscale"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    backend: InferenceBackend
    registry: CollectorRegistry
    # None in the admin app: it serves no inference request.
    requests: RequestMetrics | None
    # Set when several processes share metric files; None for a single process.
    multiproc_dir: str | None


def attach(app: Flask, runtime: Runtime) -> None:
    app.extensions[EXTENSION] = runtime


def runtime_of(app: Flask) -> Runtime:
    return app.extensions[EXTENSION]


def current_runtime() -> Runtime:
    return runtime_of(current_app)
