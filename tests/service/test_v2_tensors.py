"""service.v2's parts on their own: a V2 request to pixels (`tensors`), gzip and deflate
(`encoding`), and the answer's layout (`answer`). The HTTP behaviour is in test_v2_api.py."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from service.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.predicting import Limits
from service.v2 import encoding, tensors

LIMITS = Limits(max_body_bytes=1 << 20, max_batch=8, max_image_pixels=1 << 20)
RNG = np.random.default_rng(3)
IMAGES = RNG.integers(0, 256, (3, 784), dtype=np.uint8)


def parse(doc: dict[str, Any], binary: bytes = b"") -> tensors.InferRequest:
    return tensors.parse(orjson.dumps(doc), binary, LIMITS)


def tensor(shape: list[int], datatype: str = "UINT8", **fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "pixels", "shape": shape, "datatype": datatype, **fields}]}


@pytest.mark.parametrize("shape", [[3, 784], [3, 28, 28]])
@pytest.mark.parametrize("nesting", ["flat", "nested"])
def test_json_data_is_read_row_major_however_nested(shape: list[int], nesting: str) -> None:
    data = IMAGES.reshape(shape) if nesting == "nested" else IMAGES.reshape(-1)
    parsed = parse(tensor(shape, data=data.tolist()))
    np.testing.assert_array_equal(parsed.pixels, IMAGES)


@pytest.mark.parametrize("datatype", sorted(tensors.DATATYPES))
def test_binary_data_of_every_datatype(datatype: str) -> None:
    images = IMAGES // 2 if datatype == "INT8" else IMAGES  # INT8 holds 0..127 of 0..255
    raw = images.astype(tensors.DATATYPES[datatype]).tobytes()
    parsed = parse(tensor([3, 784], datatype, parameters={"binary_data_size": len(raw)}), raw)
    np.testing.assert_array_equal(parsed.pixels, images)


def test_whole_floats_are_accepted_for_integer_types() -> None:
    """The generated open-inference client sends UINT8 data as floats such as 255.0."""
    parsed = parse(tensor([3, 784], data=[float(v) for v in IMAGES.reshape(-1)]))
    np.testing.assert_array_equal(parsed.pixels, IMAGES)
    floats = parse(tensor([1, 784], "FP32", data=[0.5] * 784))
    assert floats.pixels.dtype.kind == "f" and floats.pixels[0, 0] == 0.5


def test_the_outputs_asked_for() -> None:
    doc = tensor([1, 784], data=[0] * 784)
    assert parse(doc).outputs == ()  # every output the model has
    assert parse(doc).binary_output is False
    assert parse(doc | {"parameters": {"binary_data_output": True}}).binary_output is True
    named = parse(doc | {"outputs": [{"name": "ood_flag"}, {"name": "probabilities"}]})
    assert named.outputs == (
        tensors.Output("ood_flag", False),
        tensors.Output("probabilities", False),
    )
    wanted = [{"name": "probabilities", "parameters": {"classification": 2, "binary_data": True}}]
    request = parse(doc | {"outputs": wanted, "id": "x"})
    assert request.outputs == (tensors.Output("probabilities", True, 2),)
    assert request.id == "x"


def test_a_huge_declared_batch_is_refused_before_anything_is_read() -> None:
    with pytest.raises(PayloadTooLarge, match="batch of 1000000000000 images"):
        parse(tensor([10**12, 784], parameters={"binary_data_size": 10**12 * 784}), b"")


def test_the_length_header_splits_json_from_binary() -> None:
    assert [bytes(part) for part in tensors.split(b"{}abc", b"2")] == [b"{}", b"abc"]
    assert [bytes(part) for part in tensors.split(b"{}abc", None)] == [b"{}abc", b""]
    for bad in (b"-1", b"1e3", b"", b"6", "٣".encode()):
        with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
            tensors.split(b"{}abc", bad)


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(InvalidInput, match="not true or false"):
        parse(tensor([1, 784], data=[[0] * 783 + [True]]))


def test_inflating_within_the_limit() -> None:
    body = b"x" * 1000
    assert encoding.decompress(gzip.compress(body), "gzip", 1000) == body
    assert encoding.decompress(zlib.compress(body), "Deflate", 1000) == body
    assert encoding.decompress(body, None, 10) == body  # not encoded: the edge bounds its size
    assert encoding.decompress(body, "identity", 10) == body
    with pytest.raises(PayloadTooLarge, match="over 999 bytes"):
        encoding.decompress(gzip.compress(body), "gzip", 999)
    with pytest.raises(UnsupportedMediaType):
        encoding.decompress(body, "br", 2000)
    with pytest.raises(BadRequest, match="ends early"):
        encoding.decompress(zlib.compress(body)[:-4], "deflate", 2000)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("br, deflate", "deflate"),
        ("gzip;q=0, deflate", "deflate"),
        ("GZIP;Q=0.5", "gzip"),
        ("*", "gzip"),
        ("*;q=0", None),
        ("gzip;q=nonsense", None),
        ("deflate;q=1, gzip;q=0.001", "deflate"),
        ("gzip;q=0.5, deflate;q=0.5", "gzip"),
    ],
)
def test_the_answers_encoding(header: str | None, chosen: str | None) -> None:
    assert encoding.preferred(header) == chosen


@pytest.mark.parametrize("coding", encoding.ENCODINGS)
def test_compress_is_what_decompress_undoes(coding: str) -> None:
    body = orjson.dumps({"outputs": list(range(500))})
    assert encoding.decompress(encoding.compress(body, coding), coding, len(body)) == body
