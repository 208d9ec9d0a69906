"""Images unlike Fashion-MNIST, for the out-of-distribution targets (tests and bench): inverted
items, uniform noise, letters and digits drawn with Pillow's fonts, and crops of photographs.

The fonts are Pillow's own (``ImageFont.load_default``) and the DejaVu faces matplotlib ships; the
photographs are matplotlib's sample images of Grace Hopper and of a packet of cigarettes."""

from __future__ import annotations

import string
from pathlib import Path

import matplotlib
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

__all__ = ["glyphs", "inverted", "noise", "photos"]

PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def inverted(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return (255 - images).astype(np.uint8)


def noise(n: int, seed: int = 0) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


def glyphs() -> NDArray[np.uint8]:
    """Every digit and letter, white on black, centred, in Pillow's default font at three sizes
    and in each DejaVu face at two: (N, 784)."""
    faces = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts: list[ImageFont.FreeTypeFont | ImageFont.ImageFont] = [
        ImageFont.load_default(size=size) for size in (16, 20, 24)
    ]
    fonts += [ImageFont.truetype(str(face), size) for face in sorted(faces.glob("DejaVu*.ttf"))
              for size in (18, 24)]  # fmt: skip
    out = []
    for font in fonts:
        for char in string.digits + string.ascii_letters:
            image = Image.new("L", (28, 28), 0)
            ImageDraw.Draw(image).text((14, 14), char, fill=255, font=font, anchor="mm")
            out.append(np.asarray(image).reshape(-1))
    return np.array(out, dtype=np.uint8)


def photos(per_photo: int = 300, seed: int = 0) -> NDArray[np.uint8]:
    """Random square crops of each photograph (a quarter of its side or more), grayscale,
    resized to 28x28 as /predict resizes a PNG: (N, 784)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in PHOTOS:
        photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name).convert("L")
        width, height = photo.size
        for _ in range(per_photo):
            side = int(rng.integers(min(width, height) // 4, min(width, height)))
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            crop = photo.crop((x, y, x + side, y + side))
            out.append(np.asarray(crop.resize((28, 28), Image.Resampling.BILINEAR)).reshape(-1))
    return np.array(out, dtype=np.uint8)
