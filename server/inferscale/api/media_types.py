"""Which bodies the V2 infer routes read, by their Content-Type and Content-Encoding.

An infer body has one format whatever its label: a JSON request, or with
`Inference-Header-Content-Length` a JSON header followed by binary tensor data.
So any label that claims nothing else is "generic" and accepted:
- none at all: tritonclient's HTTP client sends none, JSON or binary; Triton never
  reads the request's Content-Type, and FastAPI (under KServe) parses an
  unlabelled body as JSON;
- application/json, whatever its parameters (charset): the protocol's examples;
- application/*+json (RFC 6839 structured syntax suffix), which FastAPI reads as JSON;
- application/octet-stream: the binary extension's own example, and what
  aiohttp (tritonclient.http.aio) puts on any bytes body; KServe's data plane
  lists it among its JSON types too.
Anything else names another format (multipart/form-data, text/plain, curl's
default application/x-www-form-urlencoded, ...) and gets 415, as does any
Content-Encoding but identity: a gzip body is not JSON until inflated, and
415 is the status RFC 9110 gives an unsupported content coding.

/predict stays strict (application/json only): it is this server's own route,
no third-party client calls it, and its 415 tells a curl user to add the header.
"""

from __future__ import annotations

from flask import request

from inferscale.api.errors import ApiError

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
GENERIC = frozenset({"", JSON, OCTET_STREAM})


def require_infer_body() -> None:
    mimetype = request.mimetype
    if not (mimetype in GENERIC or _is_json_suffix(mimetype)):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {mimetype!r} is not an inference request; send {JSON}, {OCTET_STREAM} or no Content-Type",
        )
    require_identity_encoding()


def require_identity_encoding() -> None:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed",
        )


def _is_json_suffix(mimetype: str) -> bool:
    return mimetype.startswith("application/") and mimetype.endswith("+json")
