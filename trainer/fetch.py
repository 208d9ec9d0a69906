"""Verified download of the official Fashion-MNIST files into a cache folder."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from trainer.idx import DataError, decompressed

__all__ = ["FASHION_MNIST_SHA256", "FILES", "OFFICIAL_URL", "DownloadProgress", "download"]

OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Hashes of the decompressed bytes, so Debian's re-gzipped copies match the official files.
FASHION_MNIST_SHA256: dict[str, str] = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_CHUNK = 1 << 16
DownloadProgress = Callable[[str, int, int | None], None]


def _sha_or_none(path: Path) -> str | None:
    """SHA-256 of the decompressed file, or None when it is missing or unreadable."""
    try:
        return hashlib.sha256(decompressed(path)).hexdigest()
    except DataError:
        return None


def _fetch(
    url: str, dest: Path, name: str, timeout: float, progress: DownloadProgress | None
) -> None:
    """Stream url into the file dest and fsync it; network trouble -> DataError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length")
            total, done = (
                (int(length) if length and length.isascii() and length.isdecimal() else None),
                0,
            )
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(name, done, total)
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
        e.close()
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"cannot download {url}: {e.reason}; check the network") from None
    except TimeoutError:
        raise DataError(f"cannot download {url}: timed out after {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise DataError(f"cannot download {url} to {dest}: {e!r}") from None


def download(
    cache_dir: Path,
    *,
    base_url: str = OFFICIAL_URL,
    checksums: Mapping[str, str] = FASHION_MNIST_SHA256,
    timeout: float = 60.0,
    progress: DownloadProgress | None = None,
) -> Path:
    """Fetch the four ``<name>.gz`` files into cache_dir, each verified, and return cache_dir.

    A file already there with the right checksum is kept; a new one lands atomically or not at all.
    progress(file_name, bytes_so_far, total_or_None) is called as chunks arrive.
    """
    cache = cache_dir
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{cache}: cannot create the download folder: {e.strerror or e}") from None
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise DataError(f"download URL must start with http:// or https://, got {base_url!r}")
    base = base_url if base_url.endswith("/") else base_url + "/"
    for role, stem in FILES.items():
        name, expected = f"{stem}.gz", checksums[role]
        target = cache / name
        if _sha_or_none(target) == expected:
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(base + name, tmp, name, timeout, progress)
            got = _sha_or_none(tmp)
            if got != expected:
                raise DataError(f"checksum mismatch for {name}: expected {expected}, got {got}")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return cache
