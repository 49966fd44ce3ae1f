"""Probes: cheap, and never behind a model slot."""

from __future__ import annotations

from flask import Blueprint, jsonify

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
