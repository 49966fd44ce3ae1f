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
    summary = "; ".join(
        f"{detail['loc'] or 'body'}: {detail['message']}" for detail in details[:3]
    )
    return ApiError(400, "invalid_request", f"invalid request body: {summary}", details)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)


def error_response(error: ApiError) -> Response:
    if request.path == V2_PREFIX or request.path.startswith(V2_PREFIX + "/"):
        body: dict[str, Any] = {"error": error.message}
    else:
        body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    response = jsonify(body)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _http_exception(error: HTTPException) -> Response:
    # Keep the headers werkzeug computed, e.g. Allow on a 405.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    code = (error.name or "error").lower().replace(" ", "_")
    return error_response(ApiError(error.code or 500, code, error.description or "", None, headers))


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError(500, "internal_error", "internal server error"))
