"""Probes: cheap, answered from the model's last known status, never behind a model slot."""

from __future__ import annotations

from flask import Blueprint, jsonify

from inferscale.runtime import current_runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health():
    """Liveness: the process serves HTTP. Busy slots or a model process being restarted
    are not reasons to restart the pod; a model that cannot load is."""
    status = current_runtime().backend.status()
    if status.load_error is not None:
        return jsonify(status="failed", reason=f"model load failed: {status.load_error}"), 503
    return jsonify(status="alive")


@blueprint.get("/ready")
def ready():
    """Readiness: route traffic here only while the model is loaded and not draining."""
    status = current_runtime().backend.status()
    if status.ready:
        return jsonify(status="ready")
    if not status.reachable:
        reason = "model_unreachable"
    elif status.draining:
        reason = "draining"
    elif status.restarting:
        reason = "restarting"
    elif status.load_error is not None:
        reason = "failed"
    else:
        reason = "loading"
    return jsonify(status=reason), 503
