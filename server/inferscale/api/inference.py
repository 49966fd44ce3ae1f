"""What /predict and V2 infer share: reading a body, the width limit, running the service."""

from __future__ import annotations

import time
from typing import TypeVar

import numpy as np
from flask import request
from gunicorn.http.errors import NoMoreData, ParseException
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from inferscale.api import media_types
from inferscale.api.errors import ApiError, invalid_body
from inferscale.arrival import refuse_rest_of_request, request_in
from inferscale.backend import Outcome
from inferscale.errors import InferenceError, Rejected
from inferscale.metrics import ERROR, SUCCESS
from inferscale.runtime import current_runtime

Body = TypeVar("Body", bound=BaseModel)


def parse_body(schema: type[Body]) -> Body:
    """A JSON body that must say it is JSON: /predict's strict reading."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}",
        )
    media_types.require_identity_encoding()
    return validate_json(schema, read_body())


def read_body() -> bytes:
    """The whole body, or an error: over the limit (413), cut short or wrongly chunked (400), never a part of it."""
    declared = request.content_length
    try:
        # Past MAX_CONTENT_LENGTH a declared length raises 413 before the body is buffered.
        body = request.get_data(cache=False)
        if declared is None and len(body) >= (request.max_content_length or 0) and _more_follows():
            raise RequestEntityTooLarge()
    except ParseException as error:
        raise _unreadable("malformed_body", f"the body's chunked encoding is broken: {error}") from None
    except (NoMoreData, ClientDisconnected):
        # The client closed its side before the last chunk (NoMoreData, an
        # IOError, is what gunicorn raises when that happens past the limit).
        raise _unreadable("incomplete_body", "the body ended before its last chunk") from None
    if declared is not None and len(body) < declared:
        raise _unreadable("incomplete_body", f"the body ended after {len(body)} of its {declared} bytes")
    # Not only at the answer: a body of more than one read would count as a
    # slow client's for as long as its inference runs.
    request_in()
    return body


def _more_follows() -> bool:
    # werkzeug stops reading a chunked body at the limit without looking past it.
    return bool(request.environ["wsgi.input"].read(1))


def _unreadable(code: str, message: str) -> ApiError:
    # Where this request ends is unknown: the connection ends with the answer.
    refuse_rest_of_request()
    return ApiError(400, code, message)


def validate_json(schema: type[Body], raw: bytes) -> Body:
    try:
        return schema.model_validate_json(raw)
    except ValidationError as error:
        raise invalid_body(error) from None


def check_width(rows: np.ndarray) -> None:
    check_feature_count(rows.shape[1])


def check_feature_count(count: int) -> None:
    limit = current_runtime().settings.max_features
    if count > limit:
        raise ApiError(
            400,
            "too_many_features",
            f"{count} features per row; this model accepts at most {limit}",
        )


def run(rows: np.ndarray) -> Outcome:
    """Run rows on the model, counting how the request ended; domain errors propagate."""
    runtime = current_runtime()
    requests = runtime.requests
    if requests is None:
        raise RuntimeError("this app serves no inference requests (the admin app)")
    admitted_at = time.monotonic()
    try:
        outcome = runtime.backend.infer(rows)
    except Rejected:
        requests.rejected()
        raise
    except InferenceError:
        requests.answered(ERROR, time.monotonic() - admitted_at)
        raise
    requests.answered(SUCCESS, time.monotonic() - admitted_at)
    return outcome
