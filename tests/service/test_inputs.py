"""service.inputs: request bodies -> (N, 784) pixels, or an error naming the image and pixel."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageFile

from service import inputs
from service.errors import BadRequest, InvalidInput, PayloadTooLarge, ServiceError
from tests.support.requests import png_declaring

MAX_BATCH = 8
BIG = 4096 * 4096  # the default SOFTSERVE_MAX_IMAGE_PIXELS
rng = np.random.default_rng(7)
IMAGE: list[int] = rng.integers(0, 256, 784).tolist()
OTHER: list[int] = rng.integers(0, 256, 784).tolist()


def body(doc: Any) -> bytes:
    # Python's json writes NaN and Infinity as such: clients built on it send them.
    return json.dumps(doc).encode()


def rows(flat: list[Any]) -> list[list[Any]]:
    return [flat[r * 28 : (r + 1) * 28] for r in range(28)]


def with_pixel(index: int, value: Any, image: list[Any] = IMAGE) -> list[Any]:
    return [*image[:index], value, *image[index + 1 :]]


def parse(doc: Any, max_batch: int = MAX_BATCH) -> tuple[NDArray[Any], bool]:
    return inputs.from_json(doc if isinstance(doc, bytes) else body(doc), max_batch=max_batch)


def refused(doc: Any, error: type[ServiceError] = InvalidInput, **kw: Any) -> ServiceError:
    with pytest.raises(error) as caught:
        parse(doc, **kw)
    return caught.value


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gray(pixels: NDArray[Any]) -> Image.Image:
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28))


# --- JSON: what is accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected", "batch"),
    [
        ({"pixels": IMAGE}, [IMAGE], False),
        ({"pixels": rows(IMAGE)}, [IMAGE], False),
        ({"images": [IMAGE, OTHER]}, [IMAGE, OTHER], True),
        ({"images": [rows(IMAGE), rows(OTHER)]}, [IMAGE, OTHER], True),
        ({"images": [IMAGE]}, [IMAGE], True),
    ],
    ids=["flat", "28x28", "batch", "batch-28x28", "batch-of-one"],
)
def test_valid_json_gives_the_pixels(doc: Any, expected: list[list[int]], batch: bool) -> None:
    pixels, is_batch = parse(doc)
    assert is_batch is batch
    assert pixels.shape == (len(expected), 784)
    np.testing.assert_array_equal(pixels, expected)


def test_float_pixels_and_the_range_ends_are_accepted() -> None:
    image = [0.0, 255.0, 0, 255, 127.5, *IMAGE[5:]]
    pixels, _ = parse({"pixels": image})
    assert pixels.dtype.kind == "f"
    np.testing.assert_array_equal(pixels[0], image)


def test_a_batch_mixing_flat_and_28x28_images_is_accepted() -> None:
    """The schema allows either form per image; NumPy cannot stack them, the walk can."""
    pixels, batch = parse({"images": [IMAGE, rows(OTHER), IMAGE]})
    assert batch
    np.testing.assert_array_equal(pixels, [IMAGE, OTHER, IMAGE])


def test_well_formed_requests_never_take_the_slow_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def walk(*_args: object) -> None:
        raise AssertionError("a well-formed request was walked pixel by pixel")

    monkeypatch.setattr(inputs, "_diagnose", walk)
    for doc in ({"pixels": IMAGE}, {"pixels": rows(IMAGE)}, {"images": [IMAGE] * MAX_BATCH}):
        parse(doc)


def test_a_batch_at_the_limit_is_accepted_and_one_more_is_refused() -> None:
    assert parse({"images": [IMAGE] * MAX_BATCH})[0].shape == (MAX_BATCH, 784)
    error = refused({"images": [IMAGE] * (MAX_BATCH + 1)}, PayloadTooLarge)
    assert (error.status, error.code) == (413, "batch_too_large")
    assert f"batch of {MAX_BATCH + 1} images is over the limit of {MAX_BATCH}" in error.message
    assert error.details == {"images": MAX_BATCH + 1, "limit": MAX_BATCH}


# --- JSON: pixel problems, named by image and pixel ---------------------------------------------

NESTED_BAD = rows(with_pixel(3 * 28 + 5, "x"))  # row 3, column 5: pixel 89


@pytest.mark.parametrize(
    ("doc", "message", "image", "pixel"),
    [
        ({"pixels": IMAGE[:783]}, "expected 784 pixels, got 783", 0, None),
        ({"pixels": []}, "expected 784 pixels, got 0", 0, None),
        ({"images": [IMAGE, [*IMAGE, 0]]}, "image 1: expected 784 pixels, got 785", 1, None),
        (
            {"pixels": [*rows(IMAGE)[:27], IMAGE[:27]]},
            "expected 28 rows of 28 pixels, got 28 rows of 27/28",
            0,
            None,
        ),
        ({"pixels": rows(IMAGE)[:27]}, "expected 28 rows of 28 pixels, got 27 rows of 28", 0, None),
        ({"pixels": [IMAGE]}, "expected 28 rows of 28 pixels, got 1 rows of 784", 0, None),
        (
            {"images": [IMAGE, [rows(IMAGE)] * 28]},
            "image 1, pixel 0: expected a number 0..255, got an array of 28",
            1,
            0,
        ),
        (
            {"pixels": with_pixel(5, "a")},
            "pixel 5: expected a number 0..255, got the string 'a'",
            0,
            5,
        ),
        ({"pixels": with_pixel(5, "7")}, "pixel 5: expected a number 0..255, got the string", 0, 5),
        ({"pixels": with_pixel(5, True)}, "pixel 5: expected a number 0..255, got true", 0, 5),
        ({"pixels": with_pixel(6, False)}, "pixel 6: expected a number 0..255, got false", 0, 6),
        ({"pixels": with_pixel(78, None)}, "pixel 78: expected a number 0..255, got null", 0, 78),
        ({"pixels": with_pixel(9, {})}, "pixel 9: expected a number 0..255, got an object", 0, 9),
        ({"pixels": NESTED_BAD}, "pixel 89: expected a number 0..255, got the string 'x'", 0, 89),
        (
            {"images": [IMAGE, with_pixel(7, float("nan"))]},
            "image 1, pixel 7: expected a finite number 0..255, got nan",
            1,
            7,
        ),
        (
            {"pixels": with_pixel(7, float("inf"))},
            "pixel 7: expected a finite number 0..255, got inf",
            0,
            7,
        ),
        (
            {"pixels": rows(with_pixel(30, float("-inf")))},
            "pixel 30: expected a finite number 0..255, got -inf",
            0,
            30,
        ),
        ({"pixels": with_pixel(3, 256)}, "pixel 3: value 256 is outside 0..255", 0, 3),
        ({"pixels": with_pixel(3, -1)}, "pixel 3: value -1 is outside 0..255", 0, 3),
        ({"pixels": with_pixel(3, 255.5)}, "pixel 3: value 255.5 is outside 0..255", 0, 3),
        ({"pixels": with_pixel(3, -0.001)}, "pixel 3: value -0.001 is outside 0..255", 0, 3),
        (
            {"pixels": with_pixel(3, 2**63)},
            "pixel 3: value 9223372036854775808 is outside 0..255",
            0,
            3,
        ),
        (
            {"pixels": with_pixel(3, 10**400)},
            "pixel 3: value 10000000000000000000... is outside 0..255",
            0,
            3,
        ),
        (
            {"images": [IMAGE, 5]},
            "image 1: expected an array of 784 pixels, got the number 5",
            1,
            None,
        ),
        ({"images": [None]}, "image 0: expected an array of 784 pixels, got null", 0, None),
        ({"pixels": "abc"}, "expected an array of 784 pixels, got the string 'abc'", 0, None),
    ],
    ids=[
        "783-pixels", "no-pixels", "785-pixels-in-image-1", "ragged-row", "27-rows",
        "one-row-of-784", "nested-too-deep", "string", "numeric-string", "true", "false",
        "null", "object", "string-in-28x28", "nan", "infinity", "minus-infinity-28x28",
        "256", "-1", "255.5", "slightly-negative", "2**63", "10**400", "image-is-a-number",
        "image-is-null", "pixels-is-a-string",
    ],
)  # fmt: skip
def test_pixel_problems_name_the_image_and_pixel(
    doc: Any, message: str, image: int, pixel: int | None
) -> None:
    error = refused(doc)
    assert (error.status, error.code) == (422, "invalid_pixels")
    assert error.message.startswith(message), error.message
    first = error.details[0]
    assert first["image"] == image
    assert first.get("pixel") == pixel
    assert first["problem"] in error.message


@pytest.mark.parametrize(
    ("token", "shown"),
    [(b"NaN", "nan"), (b"Infinity", "inf"), (b"-Infinity", "-inf"), (b"1e999", "inf")],
)
def test_non_json_number_tokens_are_named_not_called_bad_json(token: bytes, shown: str) -> None:
    raw = b'{"pixels": [' + b", ".join([b"0"] * 100 + [token] + [b"1"] * 683) + b"]}"
    error = refused(raw)
    assert error.code == "invalid_pixels"
    assert error.message == f"pixel 100: expected a finite number 0..255, got {shown}"


def test_one_problem_per_image_and_at_most_max_problems() -> None:
    bad = [with_pixel(i, -i - 1) for i in range(inputs.MAX_PROBLEMS + 3)]
    error = refused({"images": [IMAGE, *bad]}, max_batch=100)
    assert error.message == "image 1, pixel 0: value -1 is outside 0..255"
    assert len(error.details) == inputs.MAX_PROBLEMS
    assert [d["image"] for d in error.details] == list(range(1, inputs.MAX_PROBLEMS + 1))
    assert [d["pixel"] for d in error.details] == list(range(inputs.MAX_PROBLEMS))


def test_every_bad_image_is_listed_when_few() -> None:
    error = refused({"images": [IMAGE[:5], IMAGE, with_pixel(2, "z")]})
    assert [(d["image"], d.get("pixel")) for d in error.details] == [(0, None), (2, 2)]


# --- JSON: the document itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "status", "message"),
    [
        (100, 422, "expected 28 rows of 28 pixels, got 1 rows of 1"),
        (1000, 422, "expected 28 rows of 28 pixels, got 1 rows of 1"),
        (100_000, 400, "body is not valid JSON"),
    ],
)
def test_deeply_nested_arrays_are_refused_without_crashing(
    depth: int, status: int, message: str
) -> None:
    raw = b'{"pixels": ' + b"[" * depth + b"0" + b"]" * depth + b"}"
    with pytest.raises((InvalidInput, BadRequest)) as caught:
        parse(raw)
    assert caught.value.status == status
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"images": []}, "'images' is empty: send at least one image"),
        ({"pixels": IMAGE, "extra": 1}, "unknown field 'extra'"),
        ({"pixel": IMAGE}, "unknown field 'pixel'"),
        ({"pixels": IMAGE, "images": [IMAGE]}, "not both"),
        ({}, "expected 'pixels' (one image) or 'images' (a batch), got neither"),
        ([IMAGE], "expected a JSON object with 'pixels' or 'images', got an array of 1"),
        ("pixels", "expected a JSON object with 'pixels' or 'images', got the string 'pixels'"),
        (3, "expected a JSON object with 'pixels' or 'images', got the number 3"),
        (None, "expected a JSON object with 'pixels' or 'images', got null"),
        ({"images": {"0": IMAGE}}, "'images' must be an array of images, got an object"),
        ({"images": IMAGE[0]}, "'images' must be an array of images, got the number "),
    ],
    ids=["empty-batch", "extra-key", "misspelt-key", "both-keys", "no-key", "array", "string",
         "number", "null", "images-object", "images-number"],
)  # fmt: skip
def test_malformed_documents_are_422(doc: Any, message: str) -> None:
    error = refused(doc)
    assert (error.status, error.code) == (422, "invalid_input")
    assert message in error.message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty body"),
        (b"  \n", "empty body"),
        (b'{"pixels": [1, 2', "body is not valid JSON"),
        (b'{"pixels": [1, 2,]}', "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"{'pixels': [1]}", "body is not valid JSON"),
    ],
    ids=["empty", "whitespace", "truncated", "trailing-comma", "not-utf8", "single-quotes"],
)
def test_unparseable_bodies_are_400(raw: bytes, message: str) -> None:
    error = refused(raw, BadRequest)
    assert (error.status, error.code) == (400, "invalid_json")
    assert message in error.message


# --- raw bytes ----------------------------------------------------------------------------------


def test_raw_bytes_are_n_images_of_784() -> None:
    data = np.array([IMAGE, OTHER, IMAGE], dtype=np.uint8)
    pixels = inputs.from_raw(data.tobytes(), max_batch=MAX_BATCH)
    assert pixels.shape == (3, 784)
    np.testing.assert_array_equal(pixels, data)


@pytest.mark.parametrize(("size", "remainder"), [(1, 1), (783, 783), (785, 1), (2 * 784 - 1, 783)])
def test_raw_bytes_not_a_multiple_of_784_are_422(size: int, remainder: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.from_raw(b"\x01" * size, max_batch=MAX_BATCH)
    assert caught.value.status == 422
    assert f"raw body of {size} bytes is not a multiple of 784" in caught.value.message
    assert caught.value.details == {"bytes": size, "remainder": remainder}


def test_raw_limits() -> None:
    with pytest.raises(InvalidInput, match="empty body"):
        inputs.from_raw(b"", max_batch=MAX_BATCH)
    assert inputs.from_raw(b"\0" * 784 * MAX_BATCH, max_batch=MAX_BATCH).shape == (MAX_BATCH, 784)
    with pytest.raises(PayloadTooLarge) as caught:
        inputs.from_raw(b"\0" * 784 * (MAX_BATCH + 1), max_batch=MAX_BATCH)
    assert caught.value.code == "batch_too_large"


# --- images -------------------------------------------------------------------------------------


def test_a_28x28_png_gives_its_pixels_exactly() -> None:
    pixels = inputs.from_image(encode(gray(np.array(IMAGE)), "PNG"), max_pixels=BIG)
    assert pixels.shape == (1, 784)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[0], IMAGE)


def test_a_jpeg_gives_the_pixels_it_decodes_to() -> None:
    smooth = np.add.outer(np.arange(28), np.arange(28)) * 4  # JPEG keeps gradients well
    data = encode(gray(smooth), "JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("L")).reshape(-1)
    pixels = inputs.from_image(data, max_pixels=BIG)
    np.testing.assert_array_equal(pixels[0], decoded)
    assert np.abs(pixels[0].astype(int) - smooth.reshape(-1)).max() <= 8  # and it is that image


@pytest.mark.parametrize(
    ("color", "luma"),
    [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29), ((255, 255, 255), 255)],
)
def test_colour_images_become_grayscale_luma(color: tuple[int, int, int], luma: int) -> None:
    exact = [encode(Image.new("RGB", (28, 28), color), "PNG")]
    exact.append(encode(Image.new("RGBA", (28, 28), (*color, 255)), "PNG"))
    for data in exact:
        assert (inputs.from_image(data, max_pixels=BIG) == luma).all()
    jpeg = encode(Image.new("RGB", (28, 28), color), "JPEG", quality=100)
    assert np.abs(inputs.from_image(jpeg, max_pixels=BIG).astype(int) - luma).max() <= 2


def test_other_sizes_are_resized_to_28x28() -> None:
    flat = encode(Image.new("L", (300, 120), 200), "PNG")
    assert (inputs.from_image(flat, max_pixels=BIG) == 200).all()
    halves = np.zeros((280, 280), dtype=np.uint8)
    halves[:, :140] = 255  # bright left half, dark right half
    pixels = inputs.from_image(encode(Image.fromarray(halves), "PNG"), max_pixels=BIG)
    image = pixels.reshape(28, 28)
    assert (image[:, :13] == 255).all()
    assert (image[:, 15:] == 0).all()
    small = np.array(IMAGE, dtype=np.uint8).reshape(28, 28)
    doubled = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # 56x56, 2x2 blocks
    back = inputs.from_image(encode(Image.fromarray(doubled), "PNG"), max_pixels=BIG)
    assert back.shape == (1, 784)
    # Downscaling by 2 blends each block with a little of its neighbours: close, not exact.
    assert np.abs(back.astype(int) - small.reshape(1, -1)).mean() < 30


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is not a PNG or JPEG image"),
        (b"not an image at all", "is not a PNG or JPEG image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "is not a PNG or JPEG image"),
        (encode(Image.new("L", (28, 28)), "GIF"), "is not a PNG or JPEG image"),
        (encode(Image.new("L", (28, 28)), "BMP"), "is not a PNG or JPEG image"),
        (png_declaring(0, 0), "is not a PNG or JPEG image"),
    ],
    ids=["empty", "text", "png-magic-only", "gif", "bmp", "zero-size"],
)
def test_unreadable_images_are_422(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.from_image(data, max_pixels=BIG, what="file 2 ('x.png')")
    assert (caught.value.status, caught.value.code) == (422, "invalid_image")
    assert caught.value.message == f"file 2 ('x.png') {message}"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_are_422(fmt: str) -> None:
    data = encode(gray(np.array(IMAGE)), fmt)
    with pytest.raises(InvalidInput) as caught:
        inputs.from_image(data[: len(data) // 2], max_pixels=BIG)
    assert caught.value.code == "invalid_image"
    assert caught.value.message.startswith("image is not a readable PNG or JPEG: ")


@pytest.mark.parametrize(
    ("width", "height"), [(5000, 5000), (20000, 20000), (100_000, 200), (2**31 - 1, 2**31 - 1)]
)
def test_a_decompression_bomb_is_413_before_decoding(
    monkeypatch: pytest.MonkeyPatch, width: int, height: int
) -> None:
    def decode(*_args: object) -> None:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(PayloadTooLarge) as caught:
        inputs.from_image(png_declaring(width, height), max_pixels=BIG)
    assert (caught.value.status, caught.value.code) == (413, "image_too_large")
    assert "SOFTSERVE_MAX_IMAGE_PIXELS" in caught.value.message


def test_the_image_limit_is_width_times_height() -> None:
    data = encode(Image.new("L", (28, 28), 9), "PNG")
    assert inputs.from_image(data, max_pixels=784).shape == (1, 784)
    with pytest.raises(PayloadTooLarge) as caught:
        inputs.from_image(data, max_pixels=783, what="file 0 ('a.png')")
    assert caught.value.message == (
        "file 0 ('a.png') is 28x28 = 784 pixels, over the limit of 783 (SOFTSERVE_MAX_IMAGE_PIXELS)"
    )
