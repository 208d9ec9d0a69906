"""trainer.data: IDX header checks, dataset lookup order, class naming, verified downloads."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.synthetic import make_images, write_dataset, write_idx
from trainer import data
from trainer.data import (
    FASHION_MNIST_CLASSES,
    FILES,
    DataError,
    default_cache_dir,
    download,
    find_files,
    load_dataset,
    load_images,
    load_labels,
    read_idx,
    resolve_data_dir,
)


def _idx(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """Hand-built IDX bytes, so a test can break exactly one thing in the header or payload."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def _gz_sha(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {role: _gz_sha(folder / f"{name}.gz") for role, name in FILES.items()}


# --- read_idx ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (2, 3, 4, 5)])
def test_read_idx_round_trips(tmp_path: Path, compress: bool, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = write_idx(tmp_path / "x.idx", array, compress=compress)
    got, sha = read_idx(path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, array)
    assert sha == hashlib.sha256(_idx(0x08, shape, array.tobytes())).hexdigest()


def test_read_idx_detects_gzip_by_magic_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    gz_named_raw = write_idx(tmp_path / "a.gz", array, compress=False)
    raw_named_gz = write_idx(tmp_path / "b", array, compress=True)
    assert read_idx(gz_named_raw)[1] == read_idx(raw_named_gz)[1]
    np.testing.assert_array_equal(read_idx(raw_named_gz)[0], array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "0 bytes, the header alone needs 4"),
        (b"\x00\x00\x08", "3 bytes, the header alone needs 4"),
        (b"hello, this is not an IDX file", "first two bytes are 6865, not 0000"),
        (b"\x01\x00" + _idx(0x08, (2,), b"\x01\x02")[2:], "first two bytes are 0100"),
        (_idx(0x0D, (2,), bytes(8)), "dtype code 0x0D (float32) is not supported, expected 0x08"),
        (_idx(0x42, (2,), bytes(2)), "dtype code 0x42 (unknown)"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions, expected 1 to 4"),
        (_idx(0x08, (1, 1, 1, 1, 1), b"\x00"), "declares 5 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header truncated: 3 dimensions need 16 bytes"),
        (_idx(0x08, (3, 0), b""), "empty dimension: 3x0"),
        (_idx(0x08, (60000, 28, 28), bytes(1000)), "header promises 47040000 bytes of data, "),
        (_idx(0x08, (4,), bytes(6)), "2 trailing bytes"),
    ],
    ids=[
        "empty", "short", "text", "nonzero-first-bytes", "float32", "unknown-dtype", "0-dims",
        "5-dims", "header-truncated", "zero-dim", "truncated", "trailing",
    ],
)  # fmt: skip
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_rejects_bad_files(
    tmp_path: Path, content: bytes, message: str, compress: bool
) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match="^" + re.escape(str(path))) as info:
        read_idx(path)
    assert message in str(info.value)


def test_truncated_message_names_file_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx(0x08, (60000, 28, 28), bytes(1000)))
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value) == (
        f"{path}: truncated: header promises 47040000 bytes of data, file holds 1000"
    )


@pytest.mark.parametrize("damage", ["flipped", "cut"])
def test_corrupt_gzip_is_a_data_error(tmp_path: Path, damage: str) -> None:
    path = write_idx(tmp_path / "x.gz", make_images(50, 3, 0)[0])
    raw = bytearray(path.read_bytes())
    if damage == "flipped":
        raw[len(raw) // 2 : len(raw) // 2 + 16] = bytes(b ^ 0xFF for b in raw[len(raw) // 2 :][:16])
    else:
        del raw[len(raw) // 2 :]
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: corrupt gzip stream")):
        read_idx(path)


def test_missing_file_and_directory_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.gz: file not found"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path}: cannot read")):
        read_idx(tmp_path)


# --- load_images / load_labels ----------------------------------------------------------------


def test_load_images_flattens_to_contiguous_rows(tmp_path: Path) -> None:
    images, labels = make_images(12, 3, seed=1)
    got, _ = load_images(write_idx(tmp_path / "i.gz", images))
    assert got.shape == (12, 784)
    assert got.dtype == np.uint8
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got[5], images[5].ravel())
    got_labels, _ = load_labels(write_idx(tmp_path / "l.gz", labels))
    np.testing.assert_array_equal(got_labels, labels)


def test_load_images_rejects_wrong_image_size(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "i.gz", np.zeros((3, 32, 32), dtype=np.uint8))
    with pytest.raises(
        DataError, match=re.escape(f"{path}: expected 28x28 images, got 32x32") + "$"
    ):
        load_images(path)


def test_load_images_and_labels_reject_wrong_rank(tmp_path: Path) -> None:
    flat = write_idx(tmp_path / "flat.gz", np.zeros((3, 784), dtype=np.uint8))
    with pytest.raises(DataError, match=r"got 2-d 3x784$"):
        load_images(flat)
    with pytest.raises(DataError, match="expected 1 dimension for labels, got 2"):
        load_labels(flat)


# --- lookup -----------------------------------------------------------------------------------


@pytest.fixture
def debian_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DEBIAN_DIR at an (empty) tmp folder so lookups do not depend on this machine."""
    folder = tmp_path / "debian"
    folder.mkdir()
    monkeypatch.setattr(data, "DEBIAN_DIR", folder)
    return folder


def test_find_files_accepts_raw_prefers_gz_and_needs_all(tmp_path: Path) -> None:
    write_dataset(tmp_path, n_train=20, n_test=10, compress=False)
    raw = find_files(tmp_path)
    assert raw == {role: tmp_path / name for role, name in FILES.items()}
    write_dataset(tmp_path, n_train=20, n_test=10, compress=True)
    assert find_files(tmp_path) == {role: tmp_path / f"{n}.gz" for role, n in FILES.items()}
    for name in FILES["test_labels"], FILES["test_labels"] + ".gz":
        (tmp_path / name).unlink()
    assert find_files(tmp_path) is None


def test_explicit_dir_beats_debian_beats_cache(tmp_path: Path, debian_dir: Path) -> None:
    write_dataset(debian_dir, n_train=20, n_test=10)
    cache = write_dataset(tmp_path / "cache", n_train=20, n_test=10)
    mine = write_dataset(tmp_path / "mine", n_train=20, n_test=10)
    assert resolve_data_dir(mine, cache_dir=cache) == mine
    assert resolve_data_dir(None, cache_dir=cache) == debian_dir


def test_explicit_dir_missing_a_file_does_not_fall_back(tmp_path: Path, debian_dir: Path) -> None:
    write_dataset(debian_dir, n_train=20, n_test=10)
    mine = write_dataset(tmp_path / "mine", n_train=20, n_test=10)
    (mine / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        DataError, match="^" + re.escape(f"{mine}: missing t10k-labels-idx1-ubyte")
    ) as info:
        resolve_data_dir(mine)
    assert "train-images" not in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_dir(tmp_path / "absent")


def test_cache_is_used_after_debian(tmp_path: Path, debian_dir: Path) -> None:
    cache = write_dataset(tmp_path / "cache", n_train=20, n_test=10)
    assert resolve_data_dir(None, cache_dir=cache) == cache


def test_nothing_found_lists_every_place_and_fix(tmp_path: Path, debian_dir: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        resolve_data_dir(None, cache_dir=cache)
    message = str(info.value)
    for needle in (
        str(debian_dir), str(cache), "apt-get install dataset-fashion-mnist", "--data-dir",
        "SOFTSERVE_DATA_DIR", "--download",
    ):  # fmt: skip
        assert needle in message


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "softserve" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "softserve" / "fashion-mnist"


# --- load_dataset -----------------------------------------------------------------------------


def test_load_synthetic_dataset(synthetic_data_dir: Path) -> None:
    ds = load_dataset(synthetic_data_dir)
    assert ds.name == "synthetic"
    assert ds.source == str(synthetic_data_dir.resolve())
    assert ds.train_images.shape == (600, 784)
    assert ds.train_labels.shape == (600,)
    assert ds.test_images.shape == (200, 784)
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.n_classes == 10
    assert ds.sha256 == _checksums(synthetic_data_dir)
    identity = json.loads(json.dumps(ds.identity()))
    assert identity == {
        "name": "synthetic", "source": ds.source, "sha256": dict(ds.sha256),
        "n_train": 600, "n_test": 200, "n_classes": 10,
    }  # fmt: skip


def test_numeric_names_cover_train_and_test_labels(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "three", n_train=30, n_test=10, n_classes=3)
    labels = np.array([0, 1, 2, 4, 1, 0, 2, 1, 0, 1], dtype=np.uint8)  # label 4 only in test
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    assert load_dataset(folder).class_names == ("0", "1", "2", "3", "4")


def test_given_class_names(synthetic_data_dir: Path) -> None:
    names = [f"class {i}" for i in range(12)]  # more names than labels is fine
    assert load_dataset(synthetic_data_dir, class_names=names).class_names == tuple(names)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "b", "c", "d", "e"], "label 9 has no class name: 5 names given"),
        (list("abcdefghi"), "label 9 has no class name: 9 names given"),
        ([*"abcdefghi", "a"], "duplicate class names: 'a'"),
        ([*"abcdefghi", ""], "non-empty"),
        ("abcdefghij", "not the string"),
    ],
)
def test_bad_class_names(synthetic_data_dir: Path, names: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(synthetic_data_dir, class_names=names)


def test_one_class_is_not_a_classification_problem(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "one", n_train=20, n_test=10, n_classes=1)
    with pytest.raises(DataError, match="at least 2 classes"):
        load_dataset(folder)


@pytest.mark.parametrize("split", ["train", "test"])
def test_image_label_count_mismatch(synthetic_data_dir: Path, split: str) -> None:
    n = {"train": 600, "test": 200}[split]
    labels = np.zeros(n - 1, dtype=np.uint8)
    write_idx(synthetic_data_dir / f"{FILES[f'{split}_labels']}.gz", labels)
    with pytest.raises(DataError, match=f"{split}: {n} images but {n - 1} labels"):
        load_dataset(synthetic_data_dir)


def test_fashion_mnist_detected_by_hashes(
    synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SHA256", _checksums(synthetic_data_dir))
    ds = load_dataset(synthetic_data_dir)
    assert ds.name == "fashion-mnist"
    assert ds.class_names == FASHION_MNIST_CLASSES


def test_real_fashion_mnist(real_data_dir: Path) -> None:
    ds = load_dataset(real_data_dir)
    assert ds.name == "fashion-mnist"
    assert ds.train_images.shape == (60000, 784)
    assert ds.train_labels.shape == (60000,)
    assert ds.test_images.shape == (10000, 784)
    assert ds.test_labels.shape == (10000,)
    assert ds.class_names == FASHION_MNIST_CLASSES
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10


# --- download against a local HTTP server ------------------------------------------------------


@dataclass
class _Server:
    url: str
    requests: list[str]


class _Httpd(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() then joins handler threads: no socket outlives a test


@pytest.fixture
def serve() -> Iterator[Callable[[Path], _Server]]:
    """Start a local HTTP server for a folder; each one is shut down after the test."""
    running: list[tuple[_Httpd, threading.Thread]] = []

    def start(folder: Path) -> _Server:
        requests: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = _Httpd(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02})
        thread.start()
        running.append((httpd, thread))
        return _Server(f"http://127.0.0.1:{httpd.server_address[1]}", requests)

    yield start
    for httpd, thread in running:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """Synthetic .gz files under a sub-folder, to check base URLs without a trailing slash."""
    return write_dataset(tmp_path / "www" / "fm", n_train=50, n_test=20)


def test_download_fetches_verifies_and_skips_good_files(
    tmp_path: Path, served: Path, serve: Callable[[Path], _Server]
) -> None:
    server = serve(served.parent)
    cache = tmp_path / "deep" / "cache"
    calls: list[tuple[str, int, int | None]] = []
    got = download(
        cache,
        base_url=server.url + "/fm",
        checksums=_checksums(served),
        progress=lambda *call: calls.append(call),
    )
    assert got == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in FILES.values())
    for name in FILES.values():
        assert (cache / f"{name}.gz").read_bytes() == (served / f"{name}.gz").read_bytes()
    assert len(server.requests) == 4
    for name in FILES.values():
        size = (served / f"{name}.gz").stat().st_size
        seen = [done for file, done, total in calls if file == f"{name}.gz" and total == size]
        assert seen
        assert seen[-1] == size
        assert seen == sorted(seen)

    download(cache, base_url=server.url + "/fm/", checksums=_checksums(served))
    assert len(server.requests) == 4


def test_download_replaces_a_corrupt_cached_file(
    tmp_path: Path, served: Path, serve: Callable[[Path], _Server]
) -> None:
    server = serve(served)
    cache = tmp_path / "cache"
    download(cache, base_url=server.url, checksums=_checksums(served))
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    download(cache, base_url=server.url, checksums=_checksums(served))
    assert server.requests[4:] == ["/train-labels-idx1-ubyte.gz"]
    assert _gz_sha(cache / "train-labels-idx1-ubyte.gz") == _checksums(served)["train_labels"]


def test_download_checksum_mismatch_leaves_nothing_behind(
    tmp_path: Path, served: Path, serve: Callable[[Path], _Server]
) -> None:
    server = serve(served)
    cache = tmp_path / "cache"
    checksums = {**_checksums(served), "test_labels": "0" * 64}
    with pytest.raises(DataError, match=r"checksum mismatch for t10k-labels-idx1-ubyte\.gz: "):
        download(cache, base_url=server.url, checksums=checksums)
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{FILES[role]}.gz" for role in ("train_images", "train_labels", "test_images")
    )


def test_download_404_names_the_url(
    tmp_path: Path, served: Path, serve: Callable[[Path], _Server]
) -> None:
    server = serve(tmp_path / "www")  # the files live one level deeper: every GET is a 404
    url = f"{server.url}/train-images-idx3-ubyte.gz"
    with pytest.raises(DataError, match=re.escape(f"cannot download {url}: HTTP 404")):
        download(tmp_path / "cache", base_url=server.url, checksums=_checksums(served))
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_unreachable_and_timeout(tmp_path: Path, served: Path) -> None:
    with socket.socket() as sock:  # listens but never answers: the read times out
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(DataError, match=f"cannot download {url}/.*timed out"):
            download(tmp_path / "cache", base_url=url, checksums=_checksums(served), timeout=0.2)
    with pytest.raises(DataError, match=f"cannot download {url}/.*refused"):  # port now closed
        download(tmp_path / "cache", base_url=url, checksums=_checksums(served))
    assert list((tmp_path / "cache").iterdir()) == []


def test_load_dataset_download_only_accepts_fashion_mnist(
    tmp_path: Path, served: Path, serve: Callable[[Path], _Server], debian_dir: Path
) -> None:
    server = serve(served)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"checksum mismatch for train-images-idx3-ubyte\.gz"):
        load_dataset(download=True, cache_dir=cache, base_url=server.url)
    assert list(cache.iterdir()) == []


def test_load_dataset_download_not_needed_when_cached(
    tmp_path: Path, served: Path, serve: Callable[[Path], _Server], debian_dir: Path
) -> None:
    server = serve(served)
    cache = write_dataset(tmp_path / "cache", n_train=20, n_test=10)
    ds = load_dataset(download=True, cache_dir=cache, base_url=server.url)
    assert ds.source == str(cache.resolve())
    assert server.requests == []


def test_download_real_fashion_mnist_from_local_mirror(
    tmp_path: Path,
    real_data_dir: Path,
    serve: Callable[[Path], _Server],
    debian_dir: Path,
) -> None:
    """Debian's re-gzipped files pass the official checksums, end to end through load_dataset."""
    server = serve(real_data_dir)
    ds = load_dataset(download=True, cache_dir=tmp_path / "cache", base_url=server.url)
    assert len(server.requests) == 4
    assert ds.name == "fashion-mnist"
    assert ds.source == str((tmp_path / "cache").resolve())
    assert ds.train_images.shape == (60000, 784)


def test_dimensions_whose_product_overflows_int64_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes(_idx(0x08, (65536, 65536, 65536, 65536), b"\x00" * 16))
    with pytest.raises(DataError, match="truncated: header promises 18446744073709551616 bytes"):
        read_idx(path)


@pytest.mark.parametrize("url", ["example.com/fashion", "file:///etc/", "ftp://127.0.0.1/x/"])
def test_download_refuses_urls_that_are_not_http(tmp_path: Path, url: str) -> None:
    with pytest.raises(DataError, match="must start with http:// or https://"):
        data.download(tmp_path / "cache", base_url=url)
    assert not list((tmp_path / "cache").glob("*"))
