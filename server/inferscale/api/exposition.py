"""GET /metrics: every worker's metrics in one exposition, never behind a model slot."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferscale import multiprocess
from inferscale.runtime import current_runtime

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics():
    runtime = current_runtime()
    if runtime.multiproc_dir:
        body, content_type = multiprocess.render(runtime.multiproc_dir)
    else:
        body, content_type = generate_latest(runtime.registry), CONTENT_TYPE_LATEST
    return Response(body, content_type=content_type)
