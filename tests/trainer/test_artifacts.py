"""trainer.artifacts: the .npz contract round-trips, saves atomically, refuses bad files by name."""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
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
    utc_now_iso,
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
    ("extra key", lambda p: _tampered(p, extra=np.zeros(3)), "unexpected arrays: extra"),
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
        "meta must be a JSON object, got array",
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
        "dataset must be a JSON object, got array",
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
    metrics = {"auc": np.float32(0.5), "one_class_auc": float("nan"), "sizes": (600, 200)}
    art = _softmax(weights=weights, metrics=metrics, extra={"notes": "kept as is"})
    weights[0, 0] = 99.0
    assert art.weights[0, 0] == 0.0
    assert not art.weights.flags.writeable
    assert art.meta["metrics"] == {"auc": 0.5, "one_class_auc": None, "sizes": [600, 200]}
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


def test_utc_now_iso_is_iso_8601_utc() -> None:
    now = utc_now_iso()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", now)
    parsed = datetime.fromisoformat(now)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=1)


def test_artifact_error_survives_pickling() -> None:
    err = ArtifactError("models/x.npz", "missing arrays: bias")
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.where, copy.problem) == (str(err), err.where, err.problem)
