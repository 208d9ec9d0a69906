"""``python -m trainer``: parse arguments -> config -> load data -> fit -> save (or sweep).

python -m trainer --model softmax --out models/          # writes models/softmax.npz
python -m trainer sweep --lr 0.01 0.1 1 --plot sweep.png  # compares learning rates
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from trainer import commands, data, report
from trainer.config import OPTIMIZERS, SCHEDULES, ConfigError, TrainConfig
from trainer.contract import KINDS
from trainer.errors import TrainerError

PROG = "python -m trainer"


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument on one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    add = parser.add_argument
    add(
        "--model",
        choices=KINDS,
        default=d.model,
        help="softmax: one output per class; binary: --positive classes vs the rest (%(default)s)",
    )
    add("--epochs", type=int, default=d.epochs, help="epochs of the selection run (%(default)s)")
    add("--batch-size", type=int, default=d.batch_size, help="rows per gradient step (%(default)s)")
    add("--l2", type=float, default=d.l2, help="L2 penalty on the weights (%(default)s)")
    add(
        "--optimizer",
        choices=OPTIMIZERS,
        default=d.optimizer,
        help="(%(default)s)",
    )
    add("--momentum", type=float, default=d.momentum, help="(%(default)s; Adam's beta1)")
    add(
        "--schedule",
        choices=SCHEDULES,
        default=d.schedule,
        help="learning-rate decay: cosine to zero, x0.1 at 50%% and 75%%, or none (%(default)s)",
    )
    add(
        "--validation-fraction",
        type=float,
        default=d.validation_fraction,
        help="share of the training set held out for model selection (%(default).4f)",
    )
    add(
        "--contrast",
        type=float,
        default=d.contrast,
        help="augmentation: each training image's intensities x U(1-c, 1+c); 0 turns it off "
        "(%(default)s)",
    )
    add(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="train on pixels / 255 as they are, not standardised per pixel",
    )
    add(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="keep the fitted logits: no temperature fitted on the validation split",
    )
    add("--seed", type=int, default=d.seed, help="(%(default)s)")
    add(
        "--positive",
        nargs="+",
        metavar="CLASS",
        help=f"binary: positive class names or indices ({' '.join(d.positive)})",
    )
    add(
        "--negative",
        nargs="+",
        metavar="CLASS",
        help="binary: negative classes (default: all the others)",
    )
    _data_args(parser)
    add("--plot", type=Path, metavar="PNG", help="draw the curves (needs matplotlib)")
    add("--quiet", action="store_true", help="no progress bar or per-epoch rows")


def _data_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--data-dir",
        type=Path,
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
        "--no-refit",
        dest="refit",
        action="store_false",
        help="keep the selection run's model; no retraining on all rows",
    )
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
    sweep.add_argument("--lr", "--learning-rate", dest="lr", type=float, nargs="+", required=True,
                       help="the peak learning rates to compare")  # fmt: skip
    sweep.set_defaults(refit=False)  # sweep compares selection runs; a refit would add nothing
    evaluate = _Parser(
        prog=f"{PROG} evaluate",
        description="Measure saved artifacts on the dataset's test split and compare with the "
        "test metrics stored in them.",
    )
    evaluate.add_argument("artifacts", type=Path, nargs="+", metavar="NPZ")
    _data_args(evaluate)
    return {"train": train, "sweep": sweep, "evaluate": evaluate}


_FLAGS = {"learning_rate": "--lr"}


def _as_flags(message: str) -> str:
    """'learning_rate must be ...' -> '--lr must be ...': name the flag the user typed."""
    field, _, rest = message.partition(" ")
    if field in {f.name for f in dataclasses.fields(TrainConfig)}:
        return f"{_FLAGS.get(field, '--' + field.replace('_', '-'))} {rest}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsers = _parsers()
    command = argv[0] if argv and argv[0] in ("sweep", "evaluate") else "train"
    args = parsers[command].parse_args(argv[1:] if command != "train" else argv)
    run = {"train": commands.train, "sweep": commands.sweep, "evaluate": commands.evaluate}[command]
    try:
        if getattr(args, "plot", None):
            report.require_matplotlib()
        run(args)
    except ConfigError as exc:
        print(f"{PROG}: error: {_as_flags(str(exc))}", file=sys.stderr)
        return 1
    except (TrainerError, report.PlotError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
