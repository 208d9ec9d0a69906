"""gzip and deflate, both ways: a request's ``Content-Encoding`` undone within the body limit, and
an answer compressed when the client's ``Accept-Encoding`` asks for it.

The decompressed size is bounded while it is decompressed (zlib's ``max_length``), so a small
body that would inflate to gigabytes is a 413 after at most the limit plus one byte.
"""

from __future__ import annotations

import zlib

from service.edge import too_large
from service.errors import BadRequest, UnsupportedMediaType

__all__ = ["ENCODINGS", "MIN_COMPRESSED", "compress", "decompress", "preferred"]

ENCODINGS = ("gzip", "deflate")
MIN_COMPRESSED = 500  # bytes: a smaller answer goes as it is (Starlette's GZipMiddleware's rule)
# zlib's window bits: gzip's header and trailer, or zlib's ("deflate" in HTTP is the zlib format)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` as sent before its Content-Encoding (none, identity, gzip or deflate), refused
    with 413 once it passes ``limit`` bytes."""
    if encoding is None:
        return body
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    if name not in _WBITS:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding[:40]!r}: send gzip, deflate or identity",
            code="unsupported_encoding",
        )
    inflater = zlib.decompressobj(_WBITS[name])
    try:
        data = inflater.decompress(body, limit + 1)
        if len(data) > limit or inflater.unconsumed_tail:
            raise too_large(None, limit, what=f"decompressed ({name}) request body")
        data += inflater.flush()
    except zlib.error as e:
        raise BadRequest(f"body is not valid {name} data: {e}", code="invalid_encoding") from None
    if len(data) > limit:
        raise too_large(None, limit, what=f"decompressed ({name}) request body")
    if not inflater.eof:
        raise BadRequest(f"body is not valid {name} data: it ends early", code="invalid_encoding")
    if inflater.unused_data:
        raise BadRequest(
            f"body has {len(inflater.unused_data)} bytes after the end of its {name} data "
            "(send one stream)",
            code="invalid_encoding",
        )
    return data


def preferred(accept_encoding: str | None) -> str | None:
    """The encoding to answer in: of gzip and deflate, the one ``Accept-Encoding`` weighs
    highest (gzip on a tie), if its weight is above zero; else None."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        name, _, params = item.strip().partition(";")
        weight = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights.setdefault(name.strip(), weight)
    best = max(ENCODINGS, key=lambda name: weights.get(name, weights.get("*", 0.0)))
    return best if weights.get(best, weights.get("*", 0.0)) > 0 else None


def compress(body: bytes, encoding: str) -> bytes:
    """``body`` in ``encoding`` (gzip or deflate), at zlib's fastest level: the answers are small
    and the time is the request's."""
    packer = zlib.compressobj(1, zlib.DEFLATED, _WBITS[encoding])
    return packer.compress(body) + packer.flush()
