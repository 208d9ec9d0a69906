"""What the CLI shows a person: per-epoch rows, metric tables and matplotlib curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.fit import EpochRecord
from trainer.metrics import SPLITS

__all__ = [
    "EPOCH_HEADER",
    "PlotError",
    "epoch_header",
    "epoch_row",
    "metrics_table",
    "plot_history",
    "plot_sweep",
    "require_matplotlib",
    "table",
]


class PlotError(RuntimeError):
    """matplotlib is missing or the figure could not be written."""


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table, right-aligned columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [" ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True))
             for row in [header, *rows]]  # fmt: skip
    lines.insert(1, " ".join("-" * w for w in widths))
    return "\n".join(lines)


EPOCH_HEADER = ("phase", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                "test_loss", "test_acc", "seconds")  # fmt: skip
_EPOCH_WIDTHS = (6, 7, 9, 10, 9, 8, 7, 9, 8, 7)


def _fixed(cells: Sequence[str]) -> str:
    return " ".join(c.rjust(w) for c, w in zip(cells, _EPOCH_WIDTHS, strict=True))


def epoch_header() -> str:
    """The header line above :func:`epoch_row` lines."""
    return _fixed(EPOCH_HEADER)


def epoch_row(record: EpochRecord) -> str:
    """One fixed-width line per epoch, so rows printed as training goes line up."""
    return _fixed((
        record.phase, f"{record.epoch}/{record.epochs}", f"{record.learning_rate:.2e}",
        _num(record.train_loss), _num(record.train_accuracy), _num(record.validation_loss),
        _num(record.validation_accuracy), _num(record.test_loss), _num(record.test_accuracy),
        f"{record.seconds:.2f}",
    ))  # fmt: skip


def metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows train / validation / test, a column per metric any of them has."""
    names: list[str] = []
    for split in metrics.values():
        names += [k for k in split if k not in names and k != "epoch"]
    rows = [[split, *(_num(values.get(n)) for n in names)] for split, values in metrics.items()]
    return table(["split", *names], rows)


def require_matplotlib() -> None:
    """Fail before any work when a plot is asked for and matplotlib is missing."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # the optional 'plot' extra
        raise PlotError(
            "--plot needs matplotlib: pip install matplotlib (or, in a checkout of softserve, "
            "pip install -e '.[plot]')"
        ) from exc
    return plt


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _save(fig: Any, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise PlotError(f"cannot write plot {path}: {exc}") from exc


def plot_history(history: Sequence[EpochRecord], path: Path, title: str) -> None:
    """Loss and accuracy per epoch: train, validation and test of each phase."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for phase, style in (("select", "-"), ("refit", "--")):
        records = [r for r in history if r.phase == phase]
        epochs = [r.epoch for r in records]
        for split in SPLITS:
            for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
                values = [getattr(r, f"{split}_{metric}") for r in records]
                if records and None not in values:
                    ax.plot(epochs, values, style, marker=".", label=f"{split} ({phase})")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_sweep(curves: Mapping[str, Sequence[EpochRecord]], path: Path, title: str) -> None:
    """Training loss per epoch, one line per learning rate."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, records in curves.items():
        ax.plot([r.epoch for r in records], [r.train_loss for r in records], marker=".",
                label=label)  # fmt: skip
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(title="learning rate")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)
