"""Request bodies the tests and benchmarks send: images as PNG or JPEG, hand-written multipart
bodies, and `mix`, one valid request of every kind the service answers."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from PIL import Image

__all__ = ["Request", "encode", "mix", "multipart", "png", "png_declaring"]

JSON, RAW, PROM = "application/json", "application/octet-stream", "text/plain"


def encode(pixels: NDArray[Any] | Sequence[int], fmt: str = "PNG") -> bytes:
    """784 intensities 0..255 as a 28x28 grayscale image file (``fmt``: PNG or JPEG)."""
    out = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28)).save(out, fmt)
    return out.getvalue()


def png(pixels: NDArray[Any] | Sequence[int]) -> bytes:
    return encode(pixels, "PNG")


def png_declaring(width: int, height: int) -> bytes:
    """A 28x28 PNG whose header claims width x height (valid CRC): a decompression bomb's shape."""
    data = bytearray(png(np.zeros(784)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def multipart(
    parts: Sequence[tuple[str, str | None, bytes, str | None]], boundary: str = "b0undary"
) -> tuple[bytes, str]:
    """A multipart/form-data body written by hand (for shapes httpx will not produce) and its
    Content-Type; each part is (field, filename or None, data, content type or None)."""
    chunks = []
    for name, filename, data, content_type in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        head += f'; filename="{filename}"' if filename else ""
        head += f"\r\nContent-Type: {content_type}" if content_type else ""
        chunks.append((head + "\r\n\r\n").encode() + data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data;boundary={boundary}"  # no space: bench.soak splits on them


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    content_type: str | None = None
    accept: str | None = None
    body: bytes | None = None

    def headers(self) -> dict[str, str]:
        pairs = (("content-type", self.content_type), ("accept", self.accept))
        return {key: value for key, value in pairs if value is not None}


def mix(images: NDArray[np.uint8]) -> list[Request]:
    """Every input form /predict takes, and the reads a dashboard makes, each valid; ``images``
    is (N, 784) uint8 with N >= 256."""
    one = images[0]
    flat = orjson.dumps({"pixels": one.tolist()})
    square = orjson.dumps({"pixels": one.reshape(28, 28).tolist()})
    form, form_type = multipart(
        [("file", f"{i}.png", png(images[i]), "image/png") for i in range(4)], "soak-boundary"
    )
    return [
        Request("POST", "/predict", JSON, None, flat),
        Request("POST", "/predict", JSON, None, square),
        Request("POST", "/predict", JSON, None, orjson.dumps({"images": images[:32].tolist()})),
        Request("POST", "/predict?top_k=3", JSON, None, flat),
        Request("POST", "/models/binary/predict", JSON, None, flat),
        Request("POST", "/predict", RAW, None, images[:256].tobytes()),
        Request("POST", "/predict?model=binary", RAW, RAW, images[:256].tobytes()),
        Request("POST", "/predict", "image/png", None, png(one)),
        Request("POST", "/predict", form_type, None, form),
        Request("GET", "/metrics", None, JSON),
        Request("GET", "/metrics", None, PROM),
        Request("GET", "/models"),
        Request("GET", "/health/ready"),
    ]  # fmt: skip
