"""Every failure leaves as JSON with the right status; a client mistake is never a 500.

Routes under /v2 answer in the Open Inference Protocol's error shape
(`{"error": "<message>"}`); the others in `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from inferscale.arrival import RequestTimeout, refuse_rest_of_request
from inferscale.errors import (
    InferenceError,
    InferenceFailed,
    InferenceLost,
    InferenceTimedOut,
    ModelUnavailable,
    Overloaded,
    ShuttingDown,
)
from inferscale.runtime import current_runtime

log = logging.getLogger(__name__)

V2_PREFIX = "/v2"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def invalid_body(error: ValidationError) -> ApiError:
    details = [
        {
            "loc": ".".join(str(part) for part in item["loc"]),
            "type": item["type"],
            "message": item["msg"],
        }
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    summary = "; ".join(f"{detail['loc'] or 'body'}: {detail['message']}" for detail in details[:3])
    return ApiError(400, "invalid_request", f"invalid request body: {summary}", details)


# Status and code of every domain error; `retry` adds Retry-After (a retry may succeed).
INFERENCE_ERRORS: dict[type[InferenceError], tuple[int, str, bool]] = {
    Overloaded: (503, "overloaded", True),
    ShuttingDown: (503, "shutting_down", True),
    ModelUnavailable: (503, "model_unavailable", True),
    InferenceLost: (503, "inference_lost", True),
    InferenceFailed: (500, "inference_failed", False),
    # No Retry-After: the same input may well hang the model again.
    InferenceTimedOut: (504, "inference_timeout", False),
}


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(InferenceError, _inference_error)
    app.register_error_handler(RequestTimeout, _request_timeout)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)


def error_body(path: str | None, code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict:
    """An error in the dialect of the route at `path` (None: not known)."""
    if path is not None and (path == V2_PREFIX or path.startswith(V2_PREFIX + "/")):
        return {"error": message}
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_response(error: ApiError) -> Response:
    response = jsonify(error_body(request.path, error.code, error.message, error.details))
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _inference_error(error: InferenceError) -> Response:
    status, code, retry = INFERENCE_ERRORS[type(error)]
    headers = {"Retry-After": str(current_runtime().settings.retry_after)} if retry else None
    return error_response(ApiError(status, code, str(error), headers=headers))


def _request_timeout(error: RequestTimeout) -> Response:
    return error_response(ApiError(408, "request_timeout", str(error)))


def _http_exception(error: HTTPException) -> Response:
    if error.code == 413:
        refuse_rest_of_request()  # don't read a body we have refused
    # Keep the headers werkzeug computed, e.g. Allow on a 405.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    code = (error.name or "error").lower().replace(" ", "_")
    return error_response(ApiError(error.code or 500, code, error.description or "", None, headers))


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError(500, "internal_error", "internal server error"))
