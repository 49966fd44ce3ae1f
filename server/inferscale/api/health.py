"""Probes and the scrape endpoint: cheap, and never behind a model slot."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferscale import multiprocess
from inferscale.runtime import current_runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health():
    """Liveness: the process serves HTTP. Busy model slots are not a reason to restart."""
    service = current_runtime().service
    if service.load_error is not None:
        return jsonify(status="failed", reason=f"model load failed: {service.load_error}"), 503
    return jsonify(status="alive")


@blueprint.get("/ready")
def ready():
    """Readiness: route traffic here only once the model is loaded and until draining starts."""
    service = current_runtime().service
    if service.draining:
        return jsonify(status="draining"), 503
    if not service.loaded:
        return jsonify(status="loading"), 503
    return jsonify(status="ready")


@blueprint.get("/metrics")
def metrics():
    runtime = current_runtime()
    if runtime.multiproc_dir:
        body, content_type = multiprocess.render(runtime.multiproc_dir)
    else:
        body, content_type = generate_latest(runtime.registry), CONTENT_TYPE_LATEST
    return Response(body, content_type=content_type)
