"""The CLI's commands: train, sweep and evaluate, each from parsed arguments to printed tables."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from math import inf, nan
from pathlib import Path
from typing import Never

from tqdm import tqdm

from trainer import data, report
from trainer.artifacts import load, save
from trainer.config import TrainConfig
from trainer.evaluate import evaluate_artifact
from trainer.fit import Progress
from trainer.metrics import SPLITS
from trainer.tasks import make_task
from trainer.train import train_model

__all__ = ["evaluate", "sweep", "train"]


def _config(args: argparse.Namespace, lr: float, **changes: object) -> TrainConfig:
    """Every TrainConfig field from the argument of the same name (the rate is passed: sweep has
    several), so a new field cannot be forgotten here; an option not given (None) keeps the
    config's default."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name != "learning_rate" and getattr(args, f.name) is not None}  # fmt: skip
    return TrainConfig.from_dict({**fields, "learning_rate": lr, **changes})


def _load(args: argparse.Namespace) -> data.Dataset:
    data_dir, origin = args.data_dir, ""
    if data_dir is None and (env := os.environ.get("SOFTSERVE_DATA_DIR")):
        data_dir, origin = Path(env), " (from SOFTSERVE_DATA_DIR)"
    bars: dict[str, tqdm[Never]] = {}

    def on_download(name: str, done: int, total: int | None) -> None:
        if name not in bars:
            bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, disable=None)
        bars[name].update(done - bars[name].n)

    started = time.perf_counter()
    try:
        dataset = data.load_dataset(
            data_dir,
            download=args.download,
            base_url=args.mirror,
            class_names=args.class_names,
            progress=on_download,
        )
    except data.DataError as exc:
        raise data.DataError(f"{exc}{origin}") from None
    finally:
        for bar in bars.values():
            bar.close()
    print(
        f"data: {dataset.name} from {dataset.source}: {len(dataset.train_labels)} train, "
        f"{len(dataset.test_labels)} test images, {dataset.n_classes} classes, "
        f"loaded in {time.perf_counter() - started:.2f} s"
    )
    return dataset


def _progress(quiet: bool) -> tuple[Callable[[Progress], None] | None, Callable[[], None]]:
    """A tqdm bar over each epoch's batches (on a terminal), with a row printed per epoch."""
    if quiet:
        return None, lambda: None
    print(report.epoch_header())
    bars: dict[str, tqdm[Never]] = {}

    def on_progress(p: Progress) -> None:
        key = f"{p.phase} {p.epoch}/{p.epochs}"
        if key not in bars:
            bars[key] = tqdm(total=p.batches, desc=key, leave=False, unit="batch", disable=None)
        bars[key].update(1)
        if p.record is not None:
            bars.pop(key).close()
            tqdm.write(report.epoch_row(p.record))

    def close() -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()

    return on_progress, close


def train(args: argparse.Namespace) -> None:
    config = _config(args, args.lr)
    dataset = _load(args)
    make_task(config, dataset.class_names)  # unknown classes: say so before any output
    out: Path = args.out if args.out.suffix == ".npz" else args.out / f"{config.model}.npz"
    on_progress, close = _progress(args.quiet)
    try:
        artifact, result = train_model(config, dataset, progress=on_progress)
    finally:
        close()
    save(artifact, out)
    print(
        f"\nfit: {result.seconds:.2f} s; best epoch {result.best_epoch} of {config.epochs} on "
        f"validation; final model fit on {result.n_train} rows"
        + (" (refit on train + validation)" if config.refit and result.n_validation else "")
    )
    print(report.metrics_table(result.metrics))
    print(f"\nwrote {out} ({out.stat().st_size // 1024} KiB, version {artifact.version})")
    if args.plot:
        report.plot_history(result.history, args.plot, f"{config.model} on {dataset.name}")
        print(f"wrote {args.plot}")


def sweep(args: argparse.Namespace) -> None:
    configs = [_config(args, lr, refit=False) for lr in args.lr]  # check all before any work
    dataset = _load(args)
    make_task(configs[0], dataset.class_names)
    results, curves = [], {}
    for config in configs:
        _, result = train_model(config, dataset)
        curves[f"{config.learning_rate:g}"] = result.history
        results.append((config.learning_rate, result))
        if not args.quiet:
            val = result.metrics.get("validation", {})
            print(f"lr {config.learning_rate:g}: validation loss {val.get('loss', nan):.4f}, "
                  f"accuracy {val.get('accuracy', nan):.4f}")  # fmt: skip
    # choose on validation loss, as the trainer does; the test columns are for reporting only
    best = min(results, key=lambda r: r[1].metrics.get("validation", {}).get("loss", inf))[0]
    splits = [(s, k) for s in SPLITS for k in ("loss", "accuracy")]
    rows = [
        [f"{lr:g}", str(result.best_epoch)]
        + [f"{result.metrics.get(s, {}).get(k, nan):.4f}" for s, k in splits]
        + [f"{result.seconds:.2f}", "yes" if lr == best else "-"]
        for lr, result in results
    ]
    header = ["lr", "best_epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
              "test_acc", "seconds", "chosen"]  # fmt: skip
    print(report.table(header, rows))
    default = TrainConfig().learning_rate
    print(
        "chosen: the rate whose run ended with the lowest validation loss, for this seed and\n"
        "these settings, without the refit (the test columns are for reporting only).\n"
        f"The default rate, {default:g}, comes from comparing rates over several seeds each\n"
        "(bench/README.md): one sweep may prefer a neighbouring rate by less than the runs\n"
        "vary from one seed to the next."
    )
    if args.plot:
        report.plot_sweep(curves, args.plot, f"{args.model} on {dataset.name}: learning rates")
        print(f"wrote {args.plot}")


def evaluate(args: argparse.Namespace) -> None:
    artifacts = [(path, load(path)) for path in args.artifacts]  # reject bad files before loading
    dataset = _load(args)
    measured = [
        (path, artifact, evaluate_artifact(artifact, dataset)) for path, artifact in artifacts
    ]
    names = ["accuracy", "loss", "roc_auc", "precision", "recall", "f1"]
    rows = []
    for path, artifact, metrics in measured:
        stored = artifact.test_accuracy
        rows.append(
            [str(path), artifact.kind, artifact.version, _num(stored)]
            + [_num(metrics.get(n)) for n in names]
        )
    print(report.table(["artifact", "kind", "version", "stored_acc", *names], rows))


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"
