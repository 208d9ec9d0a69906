"""The CLI's commands: train, sweep and evaluate, each from parsed arguments to printed tables."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Never

from tqdm import tqdm

from trainer import data, report
from trainer.artifacts import load, save
from trainer.config import TrainConfig
from trainer.evaluate import evaluate_artifact
from trainer.fit import EpochRecord, Progress
from trainer.train import train_model

__all__ = ["evaluate", "sweep", "train"]


def _config(args: argparse.Namespace, lr: float, **changes: object) -> TrainConfig:
    fields: dict[str, object] = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": lr,
        "l2": args.l2,
        "optimizer": args.optimizer,
        "momentum": args.momentum,
        "schedule": args.schedule,
        "validation_fraction": args.validation_fraction,
        "refit": args.refit,
        "standardize": args.standardize,
        "seed": args.seed,
        "positive": tuple(args.positive),
        "negative": tuple(args.negative),
    }
    return TrainConfig(**{**fields, **changes})  # type: ignore[arg-type]


def _load(args: argparse.Namespace) -> data.Dataset:
    started = time.perf_counter()
    dataset = data.load_dataset(
        args.data_dir,
        download=args.download,
        base_url=args.mirror,
        class_names=args.class_names,
    )
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
    rows, curves = [], {}
    for config in configs:
        _, result = train_model(config, dataset)
        history: Sequence[EpochRecord] = result.history
        curves[f"{config.learning_rate:g}"] = history
        m = result.metrics
        rows.append(
            [
                f"{config.learning_rate:g}",
                str(result.best_epoch),
                *(
                    f"{m.get(s, {}).get(k, float('nan')):.4f}"
                    for s in ("train", "validation", "test")
                    for k in ("loss", "accuracy")
                ),
                f"{result.seconds:.2f}",
            ]
        )
        if not args.quiet:
            print(f"lr {config.learning_rate:g}: test accuracy {m['test']['accuracy']:.4f}")
    header = [
        "lr",
        "best_epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "seconds",
    ]
    print(report.table(header, rows))
    if args.plot:
        report.plot_sweep(curves, args.plot, f"{args.model} on {dataset.name}: learning rates")
        print(f"wrote {args.plot}")


def evaluate(args: argparse.Namespace) -> None:
    artifacts = [(path, load(path)) for path in args.artifacts]  # reject bad files before loading
    dataset = _load(args)
    rows = []
    for path, artifact in artifacts:
        measured = evaluate_artifact(artifact, dataset)
        stored = artifact.meta.get("metrics", {}).get("test", {})
        rows.append(
            [str(path), artifact.kind, artifact.version]
            + [f"{stored.get(k, float('nan')):.4f}" for k in ("accuracy", "loss")]
            + [f"{measured[k]:.4f}" for k in ("accuracy", "loss")]
        )
    header = ["artifact", "kind", "version", "stored_acc", "stored_loss", "test_acc", "test_loss"]
    print(report.table(header, rows))
