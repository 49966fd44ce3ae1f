"""The Open Inference Protocol (KServe V2) REST routes for the one model this server holds."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

import inferscale
from inferscale.api import binary_data, features, inference, media_types, outputs
from inferscale.api.errors import ApiError
from inferscale.api.schemas import InferInputTensor, InferRequest
from inferscale.runtime import current_runtime

blueprint = Blueprint("v2", __name__, url_prefix="/v2")


@blueprint.get("")
def server_metadata():
    # Triton's name for the binary tensor data extension.
    return jsonify(name="inferscale", version=inferscale.__version__, extensions=["binary_tensor_data"])


@blueprint.get("/health/live")
def server_live():
    return jsonify(live=True)


@blueprint.get("/health/ready")
def server_ready():
    ready = current_runtime().backend.status().ready
    return jsonify(ready=ready), 200 if ready else 503


@blueprint.get("/models/<name>")
@blueprint.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    settings = _model(name, version)
    return jsonify(
        name=settings.model_name,
        versions=[settings.model_version],
        platform="inferscale-numpy",
        # $metadata_tensor has room for one datatype: the one the model computes in.
        inputs=[{"name": features.INPUT_NAME, "datatype": "FP64", "shape": [-1, -1]}],
        outputs=[
            {"name": output.name, "datatype": output.datatype.name, "shape": [-1]}
            for output in outputs.OUTPUTS.values()
        ],
        # Which datatypes the input takes goes in `properties`, the string-to-string
        # map that the protocol's REST schema and gRPC ModelMetadataResponse both define.
        properties={
            f"{features.INPUT_NAME}.accepted_datatypes": ",".join(features.ACCEPTED),
            f"{features.INPUT_NAME}.refused_datatypes": ",".join(features.REFUSED),
        },
    )


@blueprint.get("/models/<name>/ready")
@blueprint.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    settings = _model(name, version)
    ready = current_runtime().backend.status().ready
    return jsonify(name=settings.model_name, ready=ready), 200 if ready else 503


@blueprint.post("/models/<name>/infer")
@blueprint.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    settings = _model(name, version)
    media_types.require_infer_body()
    header, tail = binary_data.split_body(inference.read_body(), request.headers.get(binary_data.HEADER_LENGTH))
    body = inference.validate_json(InferRequest, header)
    deliveries = outputs.select(body)
    [chunk] = binary_data.input_chunks([tensor.binary_data_size for tensor in body.inputs], tail)
    rows = _rows(body.inputs[0], chunk, settings.max_batch_size)
    outcome = inference.run(rows)
    return _response(settings, body, deliveries, outcome)


def _model(name: str, version: str | None):
    settings = current_runtime().settings
    if name != settings.model_name:
        raise ApiError(404, "model_not_found", f"model {name!r} not found")
    if version is not None and version != settings.model_version:
        raise ApiError(404, "model_not_found", f"model {name!r} has no version {version!r}")
    return settings


def _rows(tensor: InferInputTensor, chunk: memoryview | None, max_batch_size: int) -> np.ndarray:
    # The limits hold on the declared shape, so no array is built past them.
    batch, width = features.declared_rows(tensor)
    if batch > max_batch_size:
        raise ApiError(400, "batch_too_large", f"batch of {batch} rows; at most {max_batch_size}")
    inference.check_feature_count(width)
    return features.decode_rows(tensor, chunk)


def _response(settings, body: InferRequest, deliveries: list[outputs.Delivery], outcome: inference.Outcome):
    encoded = [outputs.encode(delivery, outcome.value) for delivery in deliveries]
    payload = {
        "model_name": settings.model_name,
        "model_version": settings.model_version,
        "outputs": [tensor for tensor, _ in encoded],
        "parameters": {
            "inference_seconds": round(outcome.inference_seconds, 6),
            "queue_seconds": round(outcome.queue_seconds, 6),
        },
    }
    if body.id is not None:
        payload["id"] = body.id
    binaries = [raw for _, raw in encoded if raw is not None]
    if not binaries:
        return jsonify(payload)
    content, headers = binary_data.join_body(current_app.json.dumps(payload).encode(), binaries)
    return Response(content, content_type=media_types.OCTET_STREAM, headers=headers)
