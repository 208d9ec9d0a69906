"""``python -m trainer``: parse arguments -> config -> load data -> fit -> save (or sweep).

python -m trainer --model softmax --out models/          # writes models/softmax.npz
python -m trainer sweep --lr 0.01 0.1 1 --plot sweep.png  # compares learning rates
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Never, NoReturn

from tqdm import tqdm

from trainer import data, report
from trainer.artifacts import ArtifactError, load, save
from trainer.config import ConfigError, TrainConfig
from trainer.evaluate import evaluate_artifact
from trainer.fit import EpochRecord, Progress
from trainer.train import train_model

PROG = "python -m trainer"


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument on one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    add = parser.add_argument
    add("--model", choices=["softmax", "binary"], default=d.model)
    add("--epochs", type=int, default=d.epochs, help="epochs of the selection run (%(default)s)")
    add("--batch-size", type=int, default=d.batch_size, help="(%(default)s)")
    add("--l2", type=float, default=d.l2, help="L2 penalty on the weights (%(default)s)")
    add("--optimizer", choices=["momentum", "adam", "sgd"], default=d.optimizer)
    add("--momentum", type=float, default=d.momentum, help="(%(default)s; Adam's beta1)")
    add("--schedule", choices=["cosine", "step", "constant"], default=d.schedule)
    add(
        "--validation-fraction",
        type=float,
        default=d.validation_fraction,
        help="share of the training set held out for model selection (%(default).4f)",
    )
    add(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="keep the selection run's model; do not retrain on train + validation",
    )
    add("--no-standardize", dest="standardize", action="store_false")
    add("--seed", type=int, default=d.seed, help="(%(default)s)")
    add(
        "--positive",
        nargs="+",
        default=list(d.positive),
        metavar="CLASS",
        help="binary: positive class names or indices (%(default)s)",
    )
    add(
        "--negative",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="binary: negative classes (default: all the others)",
    )
    _data_args(parser)
    add("--plot", type=Path, metavar="PNG", help="draw the curves (needs softserve[plot])")
    add("--quiet", action="store_true", help="no progress bar or per-epoch rows")


def _data_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--data-dir",
        type=Path,
        default=os.environ.get("SOFTSERVE_DATA_DIR") or None,
        help="folder with the four IDX files (default: $SOFTSERVE_DATA_DIR, then "
        f"{data.DEBIAN_DIR}, then {data.default_cache_dir()})",
    )
    add(
        "--download",
        action="store_true",
        help="fetch Fashion-MNIST into the cache if it is nowhere else (checksums verified)",
    )
    add(
        "--mirror",
        default=os.environ.get("SOFTSERVE_DOWNLOAD_URL") or data.OFFICIAL_URL,
        help="base URL for --download (default: the official Fashion-MNIST files)",
    )
    add("--class-names", nargs="+", metavar="NAME", help="names of the dataset's classes")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    train = _Parser(
        prog=PROG,
        description="Train a softmax or binary logistic regression model "
        "on 28x28 images and write a .npz artifact. Other commands: `python -m trainer sweep "
        "--help` compares learning rates, `python -m trainer evaluate --help` re-measures "
        "saved artifacts.",
    )
    _common(train)
    train.add_argument(
        "--lr",
        "--learning-rate",
        dest="lr",
        type=float,
        default=TrainConfig().learning_rate,
        help="peak learning rate (%(default)s)",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=Path("models"),
        help="folder (writes MODEL.npz there) or a .npz path (%(default)s)",
    )
    sweep = _Parser(
        prog=f"{PROG} sweep",
        description="Train once per learning rate (selection "
        "run only, no refit) and compare the final metrics.",
    )
    _common(sweep)
    sweep.add_argument("--lr", "--learning-rate", dest="lr", type=float, nargs="+", required=True)
    evaluate = _Parser(
        prog=f"{PROG} evaluate",
        description="Measure saved artifacts on the dataset's test split and compare with the "
        "test metrics stored in them.",
    )
    evaluate.add_argument("artifacts", type=Path, nargs="+", metavar="NPZ")
    _data_args(evaluate)
    return {"train": train, "sweep": sweep, "evaluate": evaluate}


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


def _train(args: argparse.Namespace) -> None:
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


def _sweep(args: argparse.Namespace) -> None:
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


def _evaluate(args: argparse.Namespace) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsers = _parsers()
    command = argv[0] if argv and argv[0] in ("sweep", "evaluate") else "train"
    args = parsers[command].parse_args(argv[1:] if command != "train" else argv)
    run = {"train": _train, "sweep": _sweep, "evaluate": _evaluate}[command]
    try:
        if getattr(args, "plot", None):
            report.require_matplotlib()
        run(args)
    except (ConfigError, data.DataError, ArtifactError, report.PlotError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
