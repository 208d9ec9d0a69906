"""trainer.artifacts: the .npz contract round-trips, saves atomically, refuses bad files by name."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import stat
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer import _artifact_schema
from trainer.artifacts import (
    FORMAT,
    N_FEATURES,
    SCHEMA_VERSION,
    Artifact,
    ArtifactError,
    describe,
    load,
    make_artifact,
    new_version,
    save,
    validate,
)

FASHION = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
VERSION_PATTERN = r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}"


def _softmax(**overrides: Any) -> Artifact:
    rng = np.random.default_rng(0)
    kwargs: dict[str, Any] = {
        "kind": "softmax",
        "weights": rng.normal(scale=0.1, size=(N_FEATURES, 10)),
        "bias": rng.normal(size=10),
        "class_names": FASHION,
        "dataset": {"name": "synthetic", "sha256": {"train-images": "ab" * 32}, "counts": [6, 2]},
        "training": {"lr": 0.1, "epochs": 3, "seed": 0},
        "metrics": {"train": {"loss": 0.5, "accuracy": 0.8}, "test": {"accuracy": 0.75}},
        "history": [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}],
        "training_seconds": 1.25,
    }
    return make_artifact(**(kwargs | overrides))


def _binary(**overrides: Any) -> Artifact:
    rng = np.random.default_rng(1)
    kwargs: dict[str, Any] = {
        "kind": "binary",
        "weights": rng.normal(scale=0.1, size=(N_FEATURES, 1)),
        "bias": np.array([0.25]),
        "class_names": ["not Shirt", "Shirt"],
        "binary": {
            "positive_classes": ["Shirt"],
            "negative_classes": [name for name in FASHION if name != "Shirt"],
            "dataset_class_names": FASHION,
        },
    }
    return _softmax(**(kwargs | overrides))


MAKERS = {"softmax": _softmax, "binary": _binary}


def _npz(path: Path, **arrays: Any) -> Path:
    with path.open("wb") as fh:  # a file object, so numpy keeps the name as given
        np.savez(fh, **arrays)
    return path


def _tampered(
    path: Path,
    *,
    base: Callable[[], Artifact] = _softmax,
    changes: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **arrays: Any,
) -> Path:
    """Write a valid artifact's arrays and meta with some arrays, meta keys or both replaced."""
    art = base()
    new_meta = {key: value for key, value in art.meta.items() if key not in drop} | (changes or {})
    parts = {"weights": art.weights, "bias": art.bias, "meta": np.array(json.dumps(new_meta))}
    parts |= arrays
    return _npz(path, **{key: value for key, value in parts.items() if key not in drop})


def _truncated(path: Path, keep: float) -> Path:
    save(_softmax(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _bare_npy(path: Path) -> Path:
    with path.open("wb") as fh:
        np.save(fh, np.zeros((N_FEATURES, 10), dtype=np.float32))
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _write(data: bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return write


def _npy(array: Any = None, *, version: tuple[int, int] = (1, 0), **header: Any) -> bytes:
    """An .npy member: a real array, or (with descr, shape) just a header that may lie."""
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, np.asanyarray(array), version=version)
        return buf.getvalue()
    data: bytes = header.pop("data", b"")
    np.lib.format.write_array_header_1_0(buf, {"fortran_order": False, **header})
    return buf.getvalue() + data


def _meta_npy(**changes: Any) -> bytes:
    return _npy(np.array(json.dumps(dict(_softmax().meta) | changes)))


def _members(
    path: Path, *, compression: int = zipfile.ZIP_STORED, add: tuple[str, ...] = (), **replace: Any
) -> Path:
    """A valid softmax artifact written member by member with zipfile; ``replace`` swaps a
    member's bytes (None drops it), ``add`` repeats members, e.g. a duplicate weights.npy."""
    art = _softmax()
    members = {"weights": _npy(art.weights), "bias": _npy(art.bias), "meta": _meta_npy()}
    members |= replace
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", compression) as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names asked for
        for name in [*members, *add]:
            data = members.get(name, b"")
            if data is not None:
                zf.writestr(name if "." in name else f"{name}.npy", data)
    return path


def _zip_bomb(path: Path) -> Path:
    """A valid weights.npy followed by 64 MiB of zeros: ~64 KiB deflated."""
    art = _softmax()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("weights.npy", "w", force_zip64=True) as fh:
            fh.write(_npy(art.weights))
            for _ in range(64):
                fh.write(bytes(2**20))
        zf.writestr("bias.npy", _npy(art.bias))
        zf.writestr("meta.npy", _meta_npy())
    return path


def _many_members(path: Path) -> Path:
    with zipfile.ZipFile(_members(path), "a") as zf:
        for i in range(2000):
            zf.writestr(f"x{i}.npy", b"")
    return path


def _huge_sparse(path: Path) -> Path:
    with path.open("wb") as fh:
        fh.write(b"PK\x03\x04")
        fh.truncate(2**30)  # sparse: no disk used
    return path


F32 = np.float32
BAD_FILES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing file", lambda p: p, "no such file"),
    ("directory", _directory, "cannot read file"),
    ("truncated half", lambda p: _truncated(p, 0.5), "truncated or corrupt .npz file"),
    ("truncated tail", lambda p: _truncated(p, 0.999), "truncated or corrupt .npz file"),
    ("random bytes", _write(np.random.default_rng(7).bytes(5000)), "not an .npz file"),
    ("empty file", _write(b""), "not an .npz file"),
    ("text file", _write(b"weights,bias\n1,2\n"), "not an .npz file"),
    ("bare .npy", _bare_npy, "not an .npz file (a bare .npy array)"),
    (
        "object array",
        lambda p: _tampered(p, weights=np.array([{"a": 1}], dtype=object)),
        "contains a pickled object array (weights); refusing to load",
    ),
    ("missing key", lambda p: _tampered(p, drop=("bias",)), "missing arrays: bias"),
    ("extra key", lambda p: _tampered(p, extra=np.zeros(3)), "unexpected members: extra.npy"),
    (
        "member without .npy",
        lambda p: _members(p, weights=None, add=("weights.bin",)),
        "unexpected members: weights.bin",
    ),
    ("duplicate member", lambda p: _members(p, add=("bias",)), "duplicate members: bias.npy"),
    (
        "bzip2 member",
        lambda p: _members(p, compression=zipfile.ZIP_BZIP2),
        "unsupported compression method 12",
    ),
    ("file too large", _huge_sparse, "file is too large: 1073741824 bytes"),
    ("2003 members", _many_members, "the zip directory takes 109055 bytes, more than 65536"),
    (
        "shape bomb",
        lambda p: _members(p, weights=_npy(descr="<f4", shape=(N_FEATURES, 2**24))),
        "weights have K = 16777216 outputs, more than the 4096 supported",
    ),
    (
        "bias shape bomb",
        lambda p: _members(p, bias=_npy(descr="<f4", shape=(2**40,))),
        "bias must have shape (10,), got (1099511627776,)",
    ),
    (
        "meta size bomb",
        lambda p: _members(p, meta=_npy(descr="<U5000000", shape=())),
        "meta is too large: 20000000 bytes, more than the 8388608 allowed",
    ),
    (
        "object header",
        lambda p: _members(p, weights=_npy(descr="|O", shape=(N_FEATURES, 10), data=b"x" * 99)),
        "contains a pickled object array (weights); refusing to load",
    ),
    (
        "negative dimension",
        lambda p: _members(p, weights=_npy(descr="<f4", shape=(N_FEATURES, -10))),
        "weights must have shape (784, K), got (784, -10)",
    ),
    (
        "big-endian weights",
        lambda p: _members(p, weights=_npy(_softmax().weights.astype(">f4"))),
        "weights must be float32, got >f4",
    ),
    (
        "npy format 3.0",
        lambda p: _members(p, weights=_npy(_softmax().weights, version=(3, 0))),
        "unsupported .npy format version 3.0",
    ),
    ("zip bomb", _zip_bomb, "weights.npy declares 67140352 bytes uncompressed, more than 12861440"),
    (
        "member cut short",
        lambda p: _members(p, weights=_npy(_softmax().weights)[:-100]),
        "weights.npy holds 31260 of the 31360 data bytes its header declares",
    ),
    (
        "member with trailing bytes",
        lambda p: _members(p, weights=_npy(_softmax().weights) + b"\0" * 16),
        "weights.npy has bytes past the end of its array",
    ),
    (
        "meta not UCS-4",
        lambda p: _members(p, meta=_npy(descr="<U1", shape=(), data=b"\xff" * 4)),
        "meta is not valid Unicode text",
    ),
    (
        "meta lone surrogate",
        lambda p: _members(p, meta=_meta_npy(notes="\ud800")),
        "meta is not valid JSON",
    ),
    (
        "float64 weights",
        lambda p: _tampered(p, weights=np.zeros((N_FEATURES, 10))),
        "weights must be float32, got float64",
    ),
    (
        "wrong shape",
        lambda p: _tampered(p, weights=np.zeros((783, 10), F32)),
        "weights must have shape (784, K), got (783, 10)",
    ),
    (
        "bias shape mismatch",
        lambda p: _tampered(p, bias=np.zeros(9, F32)),
        "bias must have shape (10,), got (9,)",
    ),
    (
        "NaN weights",
        lambda p: _tampered(p, weights=np.full((N_FEATURES, 10), np.nan, F32)),
        "weights contain NaN or infinite values",
    ),
    (
        "inf bias",
        lambda p: _tampered(p, bias=np.array([np.inf] + [0] * 9, F32)),
        "bias contains NaN or infinite values",
    ),
    ("meta not JSON", lambda p: _tampered(p, meta=np.array("{nope")), "meta is not valid JSON"),
    (
        "meta JSON list",
        lambda p: _tampered(p, meta=np.array("[1, 2]")),
        "meta must be a JSON object, got an array of 2",
    ),
    ("meta bytes", lambda p: _tampered(p, meta=np.array(b"{}")), "meta must be a 0-d unicode"),
    ("meta 1-d", lambda p: _tampered(p, meta=np.array(["{}"])), "meta must be a 0-d unicode"),
    (
        "no schema_version",
        lambda p: _tampered(p, drop=("schema_version",)),
        "meta has no schema_version",
    ),
    (
        "schema_version 2",
        lambda p: _tampered(p, changes={"schema_version": 2}),
        "unknown schema_version 2: this softserve reads 1",
    ),
    (
        "schema_version string",
        lambda p: _tampered(p, changes={"schema_version": "1"}),
        "schema_version must be an integer, got '1'",
    ),
    (
        "schema_version bool",
        lambda p: _tampered(p, changes={"schema_version": True}),
        "schema_version must be an integer, got True",
    ),
    (
        "wrong format",
        lambda p: _tampered(p, changes={"format": "sklearn.pickle"}),
        "format must be 'softserve.linear'",
    ),
    (
        "missing meta key",
        lambda p: _tampered(p, drop=("history",)),
        "meta is missing keys: history",
    ),
    ("unknown kind", lambda p: _tampered(p, changes={"kind": "svm"}), "unknown kind 'svm'"),
    (
        "class_names count",
        lambda p: _tampered(p, changes={"class_names": FASHION[:9]}),
        "class_names has 9 names but weights have K = 10 outputs",
    ),
    (
        "duplicate class_names",
        lambda p: _tampered(p, changes={"class_names": ["a"] * 10}),
        "class_names must be distinct",
    ),
    (
        "binary with K=10",
        lambda p: _tampered(p, weights=_softmax().weights, bias=_softmax().bias, base=_binary),
        "kind 'binary' needs K = 1 output, got K = 10",
    ),
    (
        "binary with 3 names",
        lambda p: _tampered(p, base=_binary, changes={"class_names": ["a", "b", "c"]}),
        "binary class_names must be [negative, positive], got 3 names",
    ),
    (
        "binary without binary block",
        lambda p: _tampered(p, base=_binary, drop=("binary",)),
        "kind 'binary' needs a 'binary' object",
    ),
    (
        "softmax with K=1",
        lambda p: _tampered(p, weights=_binary().weights, bias=_binary().bias),
        "kind 'softmax' needs K >= 2 outputs, got K = 1",
    ),
    (
        "version path traversal",
        lambda p: _tampered(p, changes={"version": "../../etc"}),
        "version '../../etc' does not match",
    ),
    (
        "version trailing newline",
        lambda p: _tampered(p, changes={"version": "20261122T031500Z-3f9a2c1b\n"}),
        "does not match",
    ),
    (
        "created_at not a time",
        lambda p: _tampered(p, changes={"created_at": "yesterday"}),
        "created_at must be an ISO 8601 UTC time, got 'yesterday'",
    ),
    (
        "created_at without zone",
        lambda p: _tampered(p, changes={"created_at": "2026-11-22T03:15:00"}),
        "created_at must be an ISO 8601 UTC time",
    ),
    (
        "input 783 features",
        lambda p: _tampered(p, changes={"input": {"features": 783}}),
        "input contract must have 784 features, got 783",
    ),
    (
        "dataset not an object",
        lambda p: _tampered(p, changes={"dataset": ["fashion"]}),
        "dataset must be a JSON object, got an array of 1",
    ),
    (
        "history of numbers",
        lambda p: _tampered(p, changes={"history": [0.9, 0.5]}),
        "history must be a list of JSON objects",
    ),
    (
        "negative training_seconds",
        lambda p: _tampered(p, changes={"training_seconds": -1}),
        "training_seconds must be finite and >= 0, got -1",
    ),
    (
        "400-digit training_seconds",
        lambda p: _tampered(p, changes={"training_seconds": 10**400}),
        "meta is not portable JSON: integer 1000000000000000000000",
    ),
    (
        "infinite training_seconds",
        lambda p: _tampered(p, changes={"training_seconds": float("inf")}),
        "meta is not portable JSON: Infinity",
    ),
    (
        "metrics split a list",
        lambda p: _tampered(p, changes={"metrics": {"test": []}}),
        "metrics['test'] must be a JSON object of metric name -> number or null, got an array of 0",
    ),
    (
        "metric a string",
        lambda p: _tampered(p, changes={"metrics": {"test": {"accuracy": "high"}}}),
        "metrics['test']['accuracy'] must be a finite number or null, got 'high'",
    ),
    (
        "metric a boolean",
        lambda p: _tampered(p, changes={"metrics": {"test": {"accuracy": True}}}),
        "metrics['test']['accuracy'] must be a finite number or null, got True",
    ),
    (
        "binary classes not strings",
        lambda p: _tampered(
            p,
            base=_binary,
            changes={"binary": dict(_binary().meta["binary"], positive_classes=[6])},
        ),
        "kind 'binary' needs a 'binary' object with lists of strings",
    ),
]


@pytest.mark.parametrize(
    ("build", "fragment"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_load_rejects_with_path_and_reason(
    tmp_path: Path, build: Callable[[Path], Path], fragment: str
) -> None:
    path = build(tmp_path / "model.npz")
    with pytest.raises(ArtifactError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_round_trip_is_exact(tmp_path: Path, kind: str) -> None:
    art = MAKERS[kind]()
    loaded = load(save(art, tmp_path / "model.npz"))
    for name in ("weights", "bias"):
        before, after = getattr(art, name), getattr(loaded, name)
        assert after.dtype == np.float32
        assert after.shape == before.shape
        assert after.tobytes() == before.tobytes()
        assert after.flags.c_contiguous
        assert not after.flags.writeable
    assert dict(loaded.meta) == dict(art.meta)
    assert (loaded.kind, loaded.version, loaded.created_at) == (kind, art.version, art.created_at)
    assert loaded.class_names == art.class_names
    assert loaded.n_outputs == (10 if kind == "softmax" else 1)
    summary = describe(loaded)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["version"] == art.version


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_numpy_only_recipe_gives_the_model_logits(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(3)
    k = 10 if kind == "softmax" else 1
    w64, b64 = rng.normal(scale=0.1, size=(N_FEATURES, k)), rng.normal(size=k)
    art = MAKERS[kind](weights=w64, bias=b64)
    path = save(art, tmp_path / "model.npz")
    pixels = rng.integers(0, 256, size=(7, N_FEATURES), dtype=np.uint8)

    # The contract as a stranger would use it: NumPy and json only, no softserve code.
    with np.load(path) as f:
        assert sorted(f.files) == ["bias", "meta", "weights"]
        meta = json.loads(str(f["meta"]))
        logits = (pixels / 255) @ f["weights"] + f["bias"]

    assert (meta["schema_version"], meta["format"], meta["kind"]) == (SCHEMA_VERSION, FORMAT, kind)
    assert (meta["input"]["features"], meta["input"]["scale"]) == (N_FEATURES, 255.0)
    assert len(meta["class_names"]) == (k if kind == "softmax" else 2)
    assert logits.shape == (7, k)
    exact = pixels.astype(np.float64) / 255 @ art.weights.astype(np.float64) + art.bias
    np.testing.assert_allclose(logits, exact, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logits, pixels / 255 @ w64 + b64, atol=1e-4)  # float32 rounding


def _old_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = save(_softmax(), tmp_path / "models" / "current.npz")
    return path, path.read_bytes()


def _raise_disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(28, "No space left on device")


def _half_written_savez(file: Any, *args: Any, **kwargs: Any) -> None:
    file.write(b"PK\x03\x04 half of a zip")
    _raise_disk_full()


@pytest.mark.parametrize(
    ("target", "attribute", "replacement"),
    [
        (np, "savez", _half_written_savez),
        (os, "fsync", _raise_disk_full),
        (os, "replace", _raise_disk_full),
    ],
    ids=["savez", "fsync", "replace"],
)
def test_failed_save_leaves_old_file_and_no_temp(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: object,
    attribute: str,
    replacement: Callable[..., None],
) -> None:
    path, old = _old_file(tmp_path)
    monkeypatch.setattr(target, attribute, replacement)
    with pytest.raises(OSError, match="No space left on device"):
        save(_softmax(), path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir()] == ["current.npz"]
    assert load(path).weights.shape == (N_FEATURES, 10)


def test_interrupted_save_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, old = _old_file(tmp_path)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(_softmax(), path)
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir()] == ["current.npz"]


def test_save_replaces_creates_folders_and_leaves_no_temp(tmp_path: Path) -> None:
    path, _ = _old_file(tmp_path)
    newer = _binary()
    assert save(newer, path) == path
    assert load(path).version == newer.version
    assert [p.name for p in path.parent.iterdir()] == ["current.npz"]
    assert (
        stat.S_IMODE(path.stat().st_mode) == 0o644
    )  # readable by a service running as another user
    bare = save(newer, tmp_path / "no-suffix")  # numpy must not append ".npz"
    assert bare.is_file()
    assert not (tmp_path / "no-suffix.npz").exists()


def test_save_refuses_an_invalid_artifact(tmp_path: Path) -> None:
    good = _softmax()
    bad = Artifact(good.weights.astype(np.float64), good.bias, good.meta)
    with pytest.raises(ArtifactError, match="weights must be float32, got float64"):
        save(bad, tmp_path / "out" / "model.npz")
    assert not (tmp_path / "out" / "model.npz").exists()


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown kind", {"kind": "svm"}, "unknown kind 'svm'"),
    ("names count", {"class_names": FASHION[:9]}, "class_names has 9 names"),
    ("1-d weights", {"weights": np.zeros(N_FEATURES)}, "weights must have shape (784, K)"),
    ("bias shape", {"bias": np.zeros(3)}, "bias must have shape (10,), got (3,)"),
    ("NaN weights", {"weights": np.full((N_FEATURES, 10), np.nan)}, "weights contain NaN"),
    ("float32 overflow", {"weights": np.full((N_FEATURES, 10), 1e39)}, "weights contain NaN"),
    ("text weights", {"weights": np.full((N_FEATURES, 10), "w")}, "must be float arrays"),
    ("binary block", {"kind": "binary", "weights": np.zeros((N_FEATURES, 1)), "bias": [0.0],
                      "class_names": ["no", "yes"]}, "needs a 'binary' object"),
    ("unserialisable", {"metrics": {"model": object()}}, "meta is not JSON-serialisable"),
    ("reserved extra", {"extra": {"version": "mine"}}, "clash with reserved meta keys: version"),
    ("negative seconds", {"training_seconds": -0.5}, "training_seconds must be finite and >= 0"),
    ("huge seconds", {"training_seconds": 10**400}, "meta is not portable JSON: integer 1000"),
    ("too many outputs", {"weights": np.zeros((N_FEATURES, 4097)), "bias": np.zeros(4097),
                          "class_names": [str(i) for i in range(4097)]},
     "weights have K = 4097 outputs, more than the 4096 supported"),
    ("flat metrics", {"metrics": {"accuracy": 0.5}}, "metrics['accuracy'] must be a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_make_artifact_rejects_inconsistent_input(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ArtifactError) as info:
        _softmax(**overrides)
    assert str(info.value).startswith("<new artifact>: ")
    assert fragment in str(info.value)


def test_make_artifact_copies_and_makes_meta_plain_json(tmp_path: Path) -> None:
    weights = np.zeros((N_FEATURES, 10), dtype=np.float32)
    metrics = {"test": {"auc": np.float32(0.5), "one_class_auc": float("nan"), "epoch": 3}}
    dataset = {"name": "synthetic", "sizes": (600, 200)}
    art = _softmax(weights=weights, metrics=metrics, dataset=dataset, extra={"notes": "kept as is"})
    weights[0, 0] = 99.0
    metrics["test"]["epoch"] = 4
    assert art.weights[0, 0] == 0.0
    assert not art.weights.flags.writeable
    assert art.meta["metrics"] == {"test": {"auc": 0.5, "one_class_auc": None, "epoch": 3}}
    assert art.meta["dataset"]["sizes"] == [600, 200]
    assert art.meta["input"]["formula"] == "logits = (pixels / 255) @ weights + bias"
    assert dict(load(save(art, tmp_path / "m.npz")).meta) == dict(art.meta)
    assert load(tmp_path / "m.npz").meta["notes"] == "kept as is"


def test_unknown_meta_keys_load(tmp_path: Path) -> None:
    path = _tampered(tmp_path / "m.npz", changes={"added_later": {"x": [1, 2]}})
    assert load(path).meta["added_later"] == {"x": [1, 2]}


def test_fortran_ordered_arrays_load_c_contiguous(tmp_path: Path) -> None:
    weights = np.asfortranarray(_softmax().weights)
    assert load(_tampered(tmp_path / "m.npz", weights=weights)).weights.flags.c_contiguous


def test_new_version_is_unique_patterned_and_sorted() -> None:
    versions = [new_version() for _ in range(1000)]
    assert len(set(versions)) == 1000
    assert all(re.fullmatch(VERSION_PATTERN, v) for v in versions)
    assert versions == sorted(versions)
    stamp = datetime.strptime(versions[0][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


def test_new_version_keeps_increasing_when_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = new_version()

    class Past:
        @staticmethod
        def now(tz: Any) -> datetime:
            return datetime(2001, 1, 1, tzinfo=UTC)

    monkeypatch.setattr(_artifact_schema, "datetime", Past)
    after = [new_version() for _ in range(3)]
    assert [before, *after] == sorted({before, *after})
    assert all(re.fullmatch(VERSION_PATTERN, v) for v in after)


def test_artifact_error_survives_pickling() -> None:
    err = ArtifactError("models/x.npz", "missing arrays: bias")
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.where, copy.problem) == (str(err), err.where, err.problem)


def test_a_shape_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    """A ~300-byte file whose weights header claims (784, 2**24) float32, i.e. 52 GB."""
    path = _members(tmp_path / "bomb.npz", weights=_npy(descr="<f4", shape=(N_FEATURES, 2**24)))
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactError, match="more than the 4096 supported"):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_savez_compressed_files_load(tmp_path: Path) -> None:
    art = _softmax()
    path = tmp_path / "m.npz"
    with path.open("wb") as fh:
        np.savez_compressed(
            fh, weights=art.weights, bias=art.bias, meta=np.array(json.dumps(art.meta))
        )
    assert load(path).weights.tobytes() == art.weights.tobytes()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.timeout(10)
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    os.mkfifo(path)  # opening a FIFO for reading blocks until a writer comes: none will
    with pytest.raises(ArtifactError, match="cannot read file: not a regular file"):
        load(path)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_damaged_bytes_load_or_raise_artifact_error_only(tmp_path: Path, compression: int) -> None:
    """Truncated or with flipped bytes anywhere: a valid Artifact or an ArtifactError, no other."""
    data = _members(tmp_path / "good.npz", compression=compression).read_bytes()
    rng = np.random.default_rng(20261122)
    damaged = [data[:cut] for cut in rng.integers(0, len(data), 50)]
    for position in rng.integers(0, len(data), 200):
        flipped = bytearray(data)
        flipped[position] ^= int(rng.integers(1, 256))
        damaged.append(bytes(flipped))
    path = tmp_path / "damaged.npz"
    rejected = 0
    for variant in damaged:
        path.write_bytes(variant)
        try:
            art = load(path)
        except ArtifactError as err:
            assert str(err).startswith(f"{path}: ")
            rejected += 1
        else:
            validate(art.weights, art.bias, art.meta, where=str(path))
            assert not art.weights.flags.writeable
    assert rejected >= 50


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_loaded_meta_cannot_be_changed_through_what_callers_get(tmp_path: Path, kind: str) -> None:
    art = load(save(MAKERS[kind](), tmp_path / "m.npz"))
    before = json.dumps(art.meta)
    meta = art.meta
    meta["metrics"]["test"]["accuracy"] = 0.0
    meta["class_names"].append("extra")
    meta["history"].clear()
    summary = describe(art)
    summary["metrics"]["test"]["accuracy"] = 0.0
    summary["class_names"].append("extra")
    assert json.dumps(art.meta) == before
    assert describe(art) == describe(load(tmp_path / "m.npz"))
    assert json.loads(json.dumps(describe(art))) == describe(art)
    assert art.class_names == tuple(json.loads(before)["class_names"])


def test_artifact_attributes_and_arrays_are_read_only() -> None:
    art = _softmax()
    with pytest.raises(AttributeError):
        art.meta = {}  # type: ignore[misc]
    with pytest.raises(AttributeError):
        art.weights = np.zeros((N_FEATURES, 10), F32)  # type: ignore[misc]
    for array in (art.weights, art.bias):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.setflags(write=True)


def test_artifact_pickles_and_stays_read_only() -> None:
    art = _binary()
    copy = pickle.loads(pickle.dumps(art))
    assert (copy.kind, copy.version, copy.class_names) == (art.kind, art.version, art.class_names)
    assert copy.meta == art.meta
    for name in ("weights", "bias"):
        array = getattr(copy, name)
        assert array.tobytes() == getattr(art, name).tobytes()
        assert array.dtype == np.float32
        assert array.flags.c_contiguous
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.setflags(write=True)


def test_validate_raises_only_artifact_error_for_huge_numbers() -> None:
    art = _softmax()
    meta = dict(art.meta)
    for changes in (
        {"training_seconds": 10**400},
        {"metrics": {"test": {"accuracy": 10**400}}},
        {"metrics": {"test": {"accuracy": float("nan")}}},
    ):
        with pytest.raises(ArtifactError, match="finite"):
            validate(art.weights, art.bias, meta | changes, where="x")


def test_typed_accessors_read_meta_for_each_kind(tmp_path: Path) -> None:
    softmax = load(save(_softmax(), tmp_path / "softmax.npz"))
    assert softmax.kind == "softmax"
    assert softmax.dataset_class_names == tuple(FASHION) == softmax.class_names
    assert softmax.positive_classes == softmax.negative_classes == ()
    assert softmax.metrics("train") == {"loss": 0.5, "accuracy": 0.8}
    assert softmax.metrics("validation") == {}
    assert softmax.test_accuracy == 0.75
    assert softmax.history == [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}]

    binary = load(save(_binary(metrics={"train": {"loss": 0.3}}), tmp_path / "binary.npz"))
    assert binary.kind == "binary"
    assert binary.class_names == ("not Shirt", "Shirt")
    assert binary.dataset_class_names == tuple(FASHION)
    assert binary.positive_classes == ("Shirt",)
    assert binary.negative_classes == tuple(name for name in FASHION if name != "Shirt")
    assert binary.test_accuracy is None  # no test figures recorded


def test_accessors_hand_out_copies() -> None:
    artifact = _softmax()
    artifact.metrics("train")["loss"] = 99.0
    artifact.history.append({"epoch": 3})
    artifact.history[0]["loss"] = 0.0
    assert artifact.metrics("train")["loss"] == 0.5
    assert artifact.history == [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}]
