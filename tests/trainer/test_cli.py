"""``python -m trainer``: in-process through ``main`` and once as a real process, on synthetic data.

Nothing here may reach the network: downloads are replaced by a failure, and the subprocess gets a
mirror URL on a closed local port.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.synthetic import make_images
from trainer import data, fetch, report
from trainer.__main__ import main
from trainer.artifacts import Artifact, load
from trainer.fit import EpochRecord
from trainer.linear import Kind
from trainer.metrics import evaluate

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# a small learning rate leaves the loss well above 0, so it tells models apart at 4 decimals; a
# temperature would sharpen it towards 0 on this separable data
FAST = ["--epochs", "2", "--lr", "0.003", "--batch-size", "64", "--validation-fraction", "0.2",
        "--optimizer", "momentum", "--momentum", "0.9", "--schedule", "cosine",
        "--no-calibrate"]  # fmt: skip
ERROR_PREFIX = "python -m trainer: error:"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        pytest.fail("the CLI tried to download")

    monkeypatch.setattr(fetch, "download", no_network)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SOFTSERVE_DATA_DIR", raising=False)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main's exit code (argparse's SystemExit included), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str, *header_start: str) -> list[dict[str, str]]:
    """The rows of the printed table whose header begins with ``header_start``, as dicts."""
    lines = out.splitlines()
    n = len(header_start)
    start = next(i for i, line in enumerate(lines) if tuple(line.split()[:n]) == header_start)
    header = lines[start].split()
    body = lines[start + 1 :]
    if body and set(body[0].replace(" ", "")) == {"-"}:
        body = body[1:]
    rows: list[dict[str, str]] = []
    for line in body:
        cells = line.split()
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _table(out: str, *header_start: str) -> dict[str, dict[str, str]]:
    """Like :func:`_rows`, keyed by each row's first cell."""
    return {next(iter(row.values())): row for row in _rows(out, *header_start)}


def _test_split(folder: Path) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The synthetic test images and labels, straight from tests/synthetic.py (seed 0 + 1)."""
    images, labels = make_images(200, 10, 1)
    dataset = data.load_dataset(folder)
    np.testing.assert_array_equal(dataset.test_images, images.reshape(200, 784))  # same files
    return images.reshape(200, 784), labels


def _numpy_metrics(artifact: Artifact, folder: Path, positive: int | None) -> dict[str, float]:
    """Apply the artifact as its contract says, with NumPy alone, to the synthetic test split."""
    images, labels = _test_split(folder)
    scores = (images / 255.0) @ artifact.weights + artifact.bias
    kind: Kind = "softmax" if positive is None else "binary"
    targets = labels if positive is None else labels == positive
    return evaluate(kind, scores, targets.astype(np.intp))


def _assert_one_error_line(err: str, fragment: str) -> None:
    assert err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX)
    assert fragment in lines[0]
    assert "Traceback" not in err


# --- training ---------------------------------------------------------------------------------


def test_train_softmax_prints_epochs_and_metrics_and_writes_a_usable_artifact(
    synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "models"
    code, out, err = _run(["--data-dir", str(synthetic_data_dir), *FAST, "--out", str(out_dir)],
                          capsys)  # fmt: skip
    assert code == 0, err
    assert err == ""
    path = out_dir / "softmax.npz"
    artifact = load(path)
    assert artifact.kind == "softmax"
    assert artifact.class_names == tuple(str(i) for i in range(10))
    assert artifact.meta["dataset"]["name"] == "synthetic"
    assert artifact.meta["training"]["epochs"] == 2
    assert artifact.meta["training"]["learning_rate"] == 0.003

    best = artifact.meta["training"]["best_epoch"]
    epochs = _rows(out, "phase", "epoch")
    refit = [("refit", f"{e}/{best}") for e in range(1, best + 1)]
    assert [(row["phase"], row["epoch"]) for row in epochs] == [
        ("select", "1/2"), ("select", "2/2"), *refit
    ]  # fmt: skip
    assert [row["val_loss"] == "-" for row in epochs] == [False, False] + [True] * best
    history = artifact.meta["history"]
    assert len(history) == len(epochs)
    for row, record in zip(epochs, history, strict=True):
        assert float(row["train_loss"]) == pytest.approx(record["train_loss"], abs=5e-5)
        assert float(row["test_acc"]) == pytest.approx(record["test_accuracy"], abs=5e-5)

    measured = _numpy_metrics(artifact, synthetic_data_dir, positive=None)
    stored = artifact.meta["metrics"]["test"]
    assert measured["accuracy"] == stored["accuracy"]
    assert measured["loss"] == pytest.approx(stored["loss"], rel=1e-4)
    printed = _table(out, "split", "loss")["test"]
    assert float(printed["accuracy"]) == pytest.approx(measured["accuracy"], abs=5e-5)
    assert float(printed["loss"]) == pytest.approx(measured["loss"], abs=6e-5)
    assert float(printed["loss"]) > 0.01  # the comparison above means something
    assert f"wrote {path}" in out


def test_train_binary_by_class_name_to_a_named_file(
    synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "deep" / "x.npz"
    argv = ["--model", "binary", "--class-names", *NAMES, "--positive", "THREE", "--quiet",
            "--data-dir", str(synthetic_data_dir), *FAST, "--out", str(target)]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.npz"]
    artifact = load(target)
    assert artifact.kind == "binary"
    assert artifact.class_names == ("not three", "three")
    assert artifact.meta["binary"]["positive_classes"] == ["three"]
    assert artifact.meta["binary"]["dataset_class_names"] == NAMES

    measured = _numpy_metrics(artifact, synthetic_data_dir, positive=3)
    stored = artifact.meta["metrics"]["test"]
    assert measured["accuracy"] == stored["accuracy"]
    assert measured["loss"] == pytest.approx(stored["loss"], rel=1e-4)
    printed = _table(out, "split", "loss")["test"]
    for name in ("loss", "accuracy", "roc_auc", "f1"):
        assert float(printed[name]) == pytest.approx(measured[name], abs=6e-5), name
    assert "phase" not in out  # --quiet: no per-epoch table


def test_data_dir_comes_from_the_environment(
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOFTSERVE_DATA_DIR", str(synthetic_data_dir))
    code, out, err = _run([*FAST, "--quiet", "--out", str(tmp_path / "m.npz")], capsys)
    assert code == 0, err
    assert f"data: synthetic from {synthetic_data_dir.resolve()}" in out
    assert load(tmp_path / "m.npz").meta["dataset"]["source"] == str(synthetic_data_dir.resolve())


def test_real_process_trains_and_reports(synthetic_data_dir: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SOFTSERVE_DATA_DIR": str(synthetic_data_dir),
        "SOFTSERVE_DOWNLOAD_URL": "http://127.0.0.1:9/",  # closed port: never the internet
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "trainer", *FAST, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    artifact = load(tmp_path / "out" / "softmax.npz")
    measured = _numpy_metrics(artifact, synthetic_data_dir, positive=None)
    printed = _table(done.stdout, "split", "loss")["test"]
    assert float(printed["accuracy"]) == pytest.approx(measured["accuracy"], abs=5e-5)
    assert float(printed["loss"]) == pytest.approx(measured["loss"], abs=6e-5)
    assert "refit" in done.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "trainer", "--epochs", "abc"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    _assert_one_error_line(bad.stderr, "--epochs: invalid int value: 'abc'")
    assert bad.stdout == ""


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epochs", "0"], "--epochs must be a whole number from 1 to"),
        (["--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
        (["--lr", "-1"], "--lr must be a number in (0, 100], got -1.0"),
        (["--momentum", "1"], "momentum must be a number in [0, 1)"),
        (["--model", "binary", "--positive", "Nope"], "unknown class 'Nope': expected one of '0'"),
        (["--model", "svm"], "argument --model: invalid choice: 'svm'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--positive", "Shirt"], "positive/negative classes are for binary models"),
        (["--negative", "0"], "positive/negative classes are for binary models"),
    ],
    ids=[
        "epochs-0",
        "epochs-abc",
        "lr-negative",
        "momentum-1",
        "unknown-class",
        "model",
        "flag",
        "positive-on-softmax",
        "negative-on-softmax",
    ],
)
def test_bad_arguments_give_one_error_line(
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    fragment: str,
) -> None:
    out_dir = tmp_path / "out"
    argv = ["--data-dir", str(synthetic_data_dir), "--quiet", "--out", str(out_dir), *args]
    code, _, err = _run(argv, capsys)
    assert code != 0
    _assert_one_error_line(err, fragment)
    assert not out_dir.exists()  # nothing written


def test_missing_data_dir_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "absent"
    code, _, err = _run(["--data-dir", str(absent), "--out", str(tmp_path / "out")], capsys)
    assert code == 1
    _assert_one_error_line(err, f"{absent}: data folder does not exist")


def test_sweep_bad_learning_rate_fails_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the data folder does not exist either: the config is checked first
    argv = ["sweep", "--lr", "0.1", "0", "--data-dir", str(tmp_path / "absent")]
    code, out, err = _run(argv, capsys)
    assert code == 1
    _assert_one_error_line(err, "--lr must be a number in (0, 100], got 0.0")
    assert "data:" not in out


# --- sweep, plots, evaluate -------------------------------------------------------------------


def test_sweep_prints_a_row_per_learning_rate(
    synthetic_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--lr", "0.01", "0.1", "--data-dir", str(synthetic_data_dir),
            "--epochs", "2", "--batch-size", "64", "--optimizer", "momentum",
            "--no-calibrate"]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    rows = _table(out, "lr", "best_epoch")
    assert list(rows) == ["0.01", "0.1"]
    for row in rows.values():
        assert 1 <= int(row["best_epoch"]) <= 2
        assert 0.0 <= float(row["test_acc"]) <= 1.0
        assert float(row["val_loss"]) >= 0.0
    # a larger step gets further in two epochs on this easy set
    assert float(rows["0.1"]["train_loss"]) < float(rows["0.01"]["train_loss"])
    assert "lr 0.01: validation loss" in out
    chosen = [lr for lr, row in rows.items() if row["chosen"] == "yes"]
    assert len(chosen) == 1
    assert chosen[0] == min(rows, key=lambda lr: float(rows[lr]["val_loss"]))
    assert "chosen: the rate whose run ended with the lowest validation loss" in out
    assert "The default rate, 0.1, comes from comparing rates over several seeds" in out


def test_plot_writes_a_png(
    synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "curves.png"
    argv = ["--data-dir", str(synthetic_data_dir), *FAST, "--quiet",
            "--out", str(tmp_path / "m.npz"), "--plot", str(png)]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000
    assert f"wrote {png}" in out


def _record(epoch: int) -> EpochRecord:
    return EpochRecord("select", epoch, 2, 0.1, 1.0 / epoch, 0.5, None, None, None, None, 0.0)


def test_missing_matplotlib_is_a_clear_plot_error(
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    message = (
        "--plot needs matplotlib: pip install matplotlib "
        "(or, in a checkout of softserve, pip install -e '.[plot]')"
    )
    with pytest.raises(report.PlotError, match="^" + re.escape(message) + "$"):
        report.plot_history([_record(1), _record(2)], tmp_path / "h.png", "title")
    with pytest.raises(report.PlotError, match="needs matplotlib"):
        report.plot_sweep({"0.1": [_record(1)]}, tmp_path / "s.png", "title")

    argv = ["--data-dir", str(synthetic_data_dir), *FAST, "--quiet",
            "--out", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "p.png")]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 1
    _assert_one_error_line(err, message)
    assert not (tmp_path / "p.png").exists()


def test_evaluate_re_measures_a_saved_artifact(
    synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.npz"
    code, _, err = _run(["--data-dir", str(synthetic_data_dir), *FAST, "--quiet",
                         "--out", str(path)], capsys)  # fmt: skip
    assert code == 0, err
    code, out, err = _run(["evaluate", str(path), "--data-dir", str(synthetic_data_dir)], capsys)
    assert code == 0, err
    row = _table(out, "artifact", "kind")[str(path)]
    assert row["kind"] == "softmax"
    assert row["version"] == load(path).version
    assert row["accuracy"] == row["stored_acc"]
    stored = load(path).meta["metrics"]["test"]
    assert float(row["loss"]) == pytest.approx(stored["loss"], abs=5e-5)
    assert row["roc_auc"] == "-"  # a binary-only column, shown because none of these is binary
