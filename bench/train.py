"""Our trainer against scikit-learn and PyTorch on the same data, in one run on one machine.

    python -m bench.train [--runs N] [--quick] [--no-sklearn] [--no-torch] [--markdown]

Prints two tables, never asserts: fit time and test accuracy per method, and the time each takes
to first reach a test accuracy. Ratios are to ours measured in the same run, and the runs of all
methods are interleaved, so a busy machine slows every method alike rather than one.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from bench._refs import Curve, Fitted, load_torch, sklearn_curve, sklearn_fit, steps, torch_fit
from trainer.config import TrainConfig
from trainer.data import Dataset, load_dataset
from trainer.fit import Progress, fit
from trainer.report import table
from trainer.tasks import make_task

THRESHOLDS = (0.80, 0.83, 0.84, 0.845, 0.846)
OURS = "ours (TrainConfig())"
Job = tuple[str, Callable[[], Fitted], bool]  # method, run it, whether it goes in the fit table


def fit_ours(config: TrainConfig, dataset: Dataset) -> Fitted:
    """One ``fit`` call, timed alone, with the test accuracy at every epoch's end."""
    task = make_task(config, dataset.class_names)
    train = task.apply(dataset.train_images, dataset.train_labels)
    test = task.apply(dataset.test_images, dataset.test_labels)
    curve = Curve()

    def on_progress(p: Progress) -> None:
        if p.record is not None and p.record.test_accuracy is not None:
            seconds = time.perf_counter() - started
            curve.append((seconds, p.record.test_accuracy, f"{p.phase} {p.epoch}"))

    started = time.perf_counter()
    result = fit(config, *train, test, n_outputs=task.n_outputs, progress=on_progress)
    seconds = time.perf_counter() - started
    note = f"best epoch {result.best_epoch} of {config.epochs}, refit={config.refit}"
    return Fitted(seconds, result.metrics["test"]["accuracy"], note, curve)


def first_reach(curve: Curve, threshold: float) -> tuple[float, str] | None:
    return next(((s, where) for s, a, where in curve if a >= threshold), None)


def render(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if not markdown:
        return table(header, rows)
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *rows]]
    lines.insert(1, "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    return "\n".join(lines)


def fit_table(results: dict[str, list[Fitted]], markdown: bool) -> str:
    ours = statistics.median(r.seconds for r in results[OURS])
    rows = []
    for method, runs in results.items():
        secs = [r.seconds for r in runs]
        median = statistics.median(secs)
        rows.append([
            method, str(len(runs)), f"{median:.2f}", f"{min(secs):.2f}-{max(secs):.2f}",
            f"{statistics.median(r.accuracy for r in runs):.4f}", f"{median / ours:.2f}",
            runs[0].note,
        ])  # fmt: skip
    header = ["method", "runs", "median s", "min-max s", "test acc", "time vs ours", "note"]
    return render(header, rows, markdown)


def reach_table(curves: dict[str, list[Curve]], markdown: bool) -> str:
    rows = []
    for threshold in THRESHOLDS:
        ours: float | None = None
        for method, runs in curves.items():
            hits = [first_reach(c, threshold) for c in runs]
            if any(h is None for h in hits):
                best = max(a for c in runs for _, a, _ in c)
                rows.append([f"{threshold:.3f}", method, "not reached", "-", f"best {best:.4f}"])
                continue
            seconds = statistics.median(h[0] for h in hits if h is not None)
            ours = seconds if method == OURS else ours
            ratio = "-" if ours is None else f"{seconds / ours:.2f}"
            where = ", ".join(sorted({h[1] for h in hits if h is not None}))
            rows.append([f"{threshold:.3f}", method, f"{seconds:.2f}", ratio, where])
    return render(["test acc >=", "method", "seconds", "vs ours", "first at"], rows, markdown)


NOTES = {  # which method's notes to print -> the notes
    "": "Fit time is wall-clock seconds of the fitting alone; data loading (above) and, for the "
    "references, converting pixels to floats and scoring the test set are outside the clock. "
    "Ours includes its per-pixel standardisation, the per-epoch validation and test scoring, the "
    "selection run and the refit on train + validation.",
    "sklearn": "scikit-learn: LogisticRegression (multinomial) on pixels / 255 as float64, C={C}; "
    "saga's max_iter counts epochs. lbfgs is capped at {lbfgs} iterations and saga at {saga} "
    "epochs to bound the run: both would otherwise run for minutes. Fewer runs: each is long.",
    "PyTorch": "PyTorch: the d2l recipe (nn.Linear(784, 10), SGD lr 0.1, batch 256, 10 epochs, "
    "pixels / 255), torch.set_num_threads(2); per-epoch test scoring is outside its clock.",
    " ": "Time to accuracy: seconds from the start of fitting to the first checkpoint whose test "
    "accuracy reaches the threshold, median over runs. Ours checks at every epoch's end (that "
    "scoring is inside its clock); its refit restarts from zero weights, so a threshold first "
    "reached in the selection run ('select N') was reached by a model fit() does not return. The "
    "model that matters is the final one, whose accuracy is in the first table.",
    "sklearn ": "scikit-learn checks after warm-started fits of cumulatively {steps} iterations; "
    "each warm start restarts the solver's state (lbfgs forgets its curvature pairs), so its "
    "times are upper bounds, coarse to the step, from one run.",
}


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train", description="Our trainer against scikit-learn and PyTorch."
    )
    add = parser.add_argument
    add("--runs", type=int, help="runs of ours and of PyTorch (5; --quick: 1)")
    add("--sklearn-runs", type=int, default=1, help="cold fits per solver (%(default)s)")
    add("--lbfgs-iter", type=int, help="lbfgs max_iter (200; --quick: 20)")
    add("--saga-iter", type=int, help="saga max_iter, in epochs (50; --quick: 5)")
    add("--C", type=float, default=1.0, help="scikit-learn's inverse L2 strength (%(default)s)")
    add("--quick", action="store_true", help="one run each and small budgets: a smoke run")
    add("--no-sklearn", dest="sklearn", action="store_false")
    add("--no-torch", dest="torch", action="store_false")
    add("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    lbfgs = args.lbfgs_iter or (20 if args.quick else 200)
    saga = args.saga_iter or (5 if args.quick else 50)
    started = time.perf_counter()
    print(
        f"machine: Python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, load average {load_average()}"
    )

    t0 = time.perf_counter()
    dataset = load_dataset()
    print(f"data: {dataset.name} from {dataset.source} loaded in {time.perf_counter() - t0:.2f} s")
    train = (dataset.train_images, dataset.train_labels.astype(np.intp))
    test = (dataset.test_images, dataset.test_labels.astype(np.intp))

    torch = load_torch() if args.torch else None
    if torch is not None:
        torch.set_num_threads(2)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    elif args.torch:
        print("PyTorch: skipped, not installed (pip install torch==2.13.0)")

    results: dict[str, list[Fitted]] = {OURS: []}
    curves: dict[str, list[Curve]] = {OURS: []}
    rounds: list[list[Job]] = [[] for _ in range(runs)]
    for jobs in rounds:
        jobs.append((OURS, partial(fit_ours, TrainConfig(), dataset), True))
        if torch is not None:
            jobs.append(("PyTorch SGD (d2l)", partial(torch_fit, torch, train, test), True))
    if args.sklearn:  # one job per round, so that ours is measured all along the run
        sk: list[Job] = []
        for solver, cap in (("saga", saga), ("lbfgs", lbfgs)):
            budget = {"max_iter": cap, "C": args.C}
            sk += [(f"sklearn {solver}", partial(sklearn_fit, solver, train, test, **budget), True)
                   for _ in range(args.sklearn_runs)]  # fmt: skip
            curve = partial(sklearn_curve, solver, train, test, thresholds=THRESHOLDS, **budget)
            sk.append((f"sklearn {solver}", curve, False))
        rounds += [[] for _ in range(len(sk) - len(rounds))]
        for jobs, job in zip(rounds, sk, strict=False):
            jobs.append(job)
    for jobs in rounds:
        for name, run, timed in jobs:
            result = run()
            kind = "fit" if timed else "time-to-accuracy sweep"
            done = f"{result.seconds:.2f} s, test acc {result.accuracy:.4f}; {result.note}"
            print(f"  {name} {kind}: {done}", file=sys.stderr, flush=True)
            if timed:
                results.setdefault(name, []).append(result)
            if result.curve is not None:
                curves.setdefault(name, []).append(result.curve)

    methods = " ".join(results)
    step_text = ", ".join(map(str, steps(16))) + ", ..."
    notes = [note.format(C=args.C, lbfgs=lbfgs, saga=saga, steps=step_text)
             for key, note in NOTES.items() if key.strip() in methods]  # fmt: skip
    if not args.markdown:
        notes = [textwrap.fill(n, 98, subsequent_indent="  ") for n in notes]
    print(f"\nFit time and test accuracy (runs of ours: {runs}):\n")
    print(fit_table(results, args.markdown))
    print("\nTime to reach a test accuracy:\n")
    print(reach_table(curves, args.markdown))
    print("\nNotes:\n" + "\n".join("- " + n for n in notes))
    print(f"\nafter: load average {load_average()}; benchmark took "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
