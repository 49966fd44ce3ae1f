"""The binary tensor data extension's body: a JSON header, then each binary tensor's bytes in order.

`Inference-Header-Content-Length` gives the JSON header's size, in requests and
responses alike; each binary tensor states its own size in
`parameters.binary_data_size`. Every size must add up exactly: a body that
does not is refused, never guessed at.
"""

from __future__ import annotations

import reprlib
from itertools import accumulate

from inferscale.api.errors import ApiError

HEADER_LENGTH = "Inference-Header-Content-Length"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """The JSON header and the binary data behind it; None when the whole body is JSON."""
    if header_length is None:
        return body, None
    # isdigit() alone would let through other scripts' digits, which int() reads too.
    if not (header_length.isascii() and header_length.isdigit()):
        raise _invalid(f"{HEADER_LENGTH} must be a whole number of bytes, got {reprlib.repr(header_length)}")
    digits = header_length.lstrip("0") or "0"
    # Compared as text first: int() refuses strings past 4,300 digits.
    if len(digits) > len(str(len(body))) or int(digits) > len(body):
        raise _invalid(f"{HEADER_LENGTH} is {reprlib.repr(digits)} but the body holds only {len(body)} bytes")
    length = int(digits)
    # A view, so the tensors are not copied out of the body.
    return body[:length], memoryview(body)[length:]


def input_chunks(sizes: list[int | None], tail: memoryview | None) -> list[memoryview | None]:
    """Each input's binary data, in input order; None for an input whose data is JSON."""
    if tail is None:
        if any(size is not None for size in sizes):
            raise _invalid(f"binary_data_size is set but the request has no {HEADER_LENGTH} header")
        return [None] * len(sizes)
    ends = list(accumulate(size or 0 for size in sizes))
    declared = ends[-1] if ends else 0
    if declared != len(tail):
        raise _invalid(
            f"the inputs' binary_data_size add up to {declared} bytes, but {len(tail)} bytes follow the JSON header"
        )
    starts = [0, *ends[:-1]]
    return [None if size is None else tail[start:end] for size, start, end in zip(sizes, starts, ends, strict=True)]


def join_body(header: bytes, chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A response body with binary outputs, and the header that says where its JSON ends."""
    return header + b"".join(chunks), {HEADER_LENGTH: str(len(header))}


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_binary_data", message)
