"""Drift: how the images each model answered lately compare with its training data.

Over a sliding window (SOFTSERVE_DRIFT_WINDOW seconds, in ``BUCKETS`` time buckets), per model
version: the flag rate of the out-of-distribution assessment against its expected rate, the mean
pixel intensity against the training images', the share of each predicted class against the
training prior (population stability index), and the mean top probability.

Only aggregates are kept: counts and sums per bucket, never an image or a prediction. The flag
rate counts every image; the intensity, the classes and the top probability are read from at most
``SAMPLE`` evenly spaced images of a request, weighted by the request's size (a 1024-image batch
would otherwise cost ~15% of its time here).

With several workers, each writes its buckets to ``<folder>/<pid>.json`` once a second (when
they changed; a temp file, then ``os.replace``) and a report merges every worker's file: the
figures cover all of them, as prometheus-client's multiprocess mode does for the counts. A dead
worker's buckets age out of the window like any others.

When a window of at least ``MIN_IMAGES`` images flags more than SOFTSERVE_DRIFT_ALERT_FACTOR
times the expected rate, one warning line is logged; another only after the rate has come back
under that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from numpy.typing import NDArray

from trainer import linear

if TYPE_CHECKING:
    from service.predicting import Prediction
    from service.registry import Served

__all__ = ["BUCKETS", "MIN_IMAGES", "SAMPLE", "Drift", "psi"]

log = logging.getLogger("softserve.drift")

BUCKETS = 30  # the window is kept as this many time buckets
SAMPLE = 64  # most images of one request read for intensity, classes and top probability
MIN_IMAGES = 200  # no alarm on a window with fewer images
FLUSH_SECONDS = 1.0  # how often a worker shares its buckets, when it has others to share with
_EPSILON = 1e-4  # shares are clipped to this in the PSI, so an empty class is not infinite

# A bucket: [images, assessed, flagged, weight, intensity, top probability, *class weights]
# (weight: the images intensity, top probability and classes stand for)
_IMAGES, _ASSESSED, _FLAGGED, _WEIGHT, _INTENSITY, _TOP = range(6)
_CLASSES = 6
Key = tuple[str, str]  # (model, version)
Buckets = dict[int, list[float]]


def psi(observed: Iterable[float], expected: Iterable[float]) -> float:
    """Population stability index: sum over classes of (o - e) * ln(o / e), shares clipped."""
    total = 0.0
    for o, e in zip(observed, expected, strict=True):
        o, e = max(o, _EPSILON), max(e, _EPSILON)
        total += (o - e) * math.log(o / e)
    return total


class Drift:
    """One worker's windows, and the merged figures of every worker sharing ``folder``."""

    def __init__(self, window: float, alert_factor: float, folder: Path | None = None) -> None:
        self.window = window
        self.bucket_seconds = window / BUCKETS
        self.alert_factor = alert_factor
        self.folder = folder
        self._own: dict[Key, Buckets] = {}
        # Requests add to buckets on the event loop while /metrics reads them in a thread.
        self._lock = threading.Lock()
        self._dirty = False
        self._alerted: set[Key] = set()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._path = folder / f"{os.getpid()}.json"

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def record(self, prediction: Prediction, X: NDArray[np.float32]) -> None:
        """Count one answered request: ``X`` is its pixels / 255."""
        served = prediction.served
        n = len(prediction)
        if n == 0:
            return
        classes = [0.0] * len(served.class_names)
        if n == 1:
            intensity = float(X.sum()) / X.shape[1]
            if served.kind == "softmax":
                row: list[float] = prediction.proba[0].tolist()
                top = max(row)
                classes[row.index(top)] = 1.0
            else:
                p = float(prediction.proba[0])
                top = max(p, 1 - p)
                classes[p > 0.5] = 1.0
        else:  # SAMPLE rows, evenly spaced, each standing for n / SAMPLE of them
            rows = np.linspace(0, n - 1, SAMPLE).round().astype(np.intp) if n > SAMPLE else None
            picked = X if rows is None else X[rows]
            weight = n / len(picked)
            intensity = float(picked.sum()) / X.shape[1] * weight
            table = prediction.table if rows is None else prediction.table[rows]
            top = float(table.max(axis=1).sum()) * weight
            logits = prediction.logits if rows is None else prediction.logits[rows]
            labels = linear.predict_labels(served.kind, logits)
            counts: list[int] = np.bincount(labels, minlength=len(classes)).tolist()
            classes = [c * weight for c in counts]
        assessment = prediction.assessment
        assessed, flagged = (n, assessment.count()) if assessment is not None else (0, 0)
        slot = int(time.time() // self.bucket_seconds)
        key = (served.name, served.version)
        with self._lock:
            buckets = self._own.get(key)
            if buckets is None:
                buckets = self._own[key] = {}
            bucket = buckets.get(slot)
            if bucket is None:
                bucket = buckets[slot] = [0.0] * (_CLASSES + len(classes))
            bucket[_IMAGES] += n
            bucket[_ASSESSED] += assessed
            bucket[_FLAGGED] += flagged
            bucket[_WEIGHT] += n
            bucket[_INTENSITY] += intensity
            bucket[_TOP] += top
            for i, c in enumerate(classes):
                bucket[_CLASSES + i] += c
            self._dirty = True

    def report(self, models: Mapping[str, Served]) -> dict[str, dict[str, Any]]:
        """Each model's figures, for its active version."""
        return {name: self.figures(served) for name, served in sorted(models.items())}

    def figures(self, served: Served) -> dict[str, Any]:
        """The window's figures for ``served`` (one model version), over every worker."""
        total = [0.0] * (_CLASSES + len(served.class_names))
        workers = 0
        for buckets in self._every_worker((served.name, served.version), len(total)):
            workers += 1
            for bucket in buckets:
                for i, value in enumerate(bucket):
                    total[i] += value
        figures = _figures(served, total, self.window, workers)
        ratio = figures["flag_ratio"]
        figures["alert"] = (
            figures["assessed"] >= MIN_IMAGES and ratio is not None and ratio > self.alert_factor
        )
        return figures

    def _every_worker(self, key: Key, width: int) -> Iterator[list[list[float]]]:
        """The buckets inside the window of each worker that has any for ``key``: this one's,
        then the other workers' files' (a file that cannot be read is passed over)."""
        oldest = int(time.time() // self.bucket_seconds) - BUCKETS + 1
        with self._lock:
            own = [list(b) for s, b in self._own.get(key, {}).items() if s >= oldest]
        if own:
            yield own
        if self.folder is None:
            return
        name = f"{key[0]}\0{key[1]}"
        for path in self.folder.glob("*.json"):
            if path == self._path:
                continue
            try:
                theirs = _read_window(path, name, oldest, width)
            except (OSError, ValueError, TypeError, AttributeError, KeyError):
                continue  # gone, being replaced, or not one of ours: passed over
            if theirs:
                yield theirs

    def flush(self) -> None:
        """Share this worker's buckets with the others (when there are others and they changed)."""
        if self.folder is None or not self._dirty:
            return
        with self._lock:
            self._dirty = False
            windows = {
                f"{name}\0{version}": {str(s): list(b) for s, b in buckets.items()}
                for (name, version), buckets in self._own.items()
            }
        temp = self._path.with_suffix(".tmp")
        temp.write_bytes(orjson.dumps({"pid": os.getpid(), "windows": windows}))
        temp.replace(self._path)

    def expire(self) -> None:
        """Drop the buckets that have left the window, and the versions left with none."""
        oldest = int(time.time() // self.bucket_seconds) - BUCKETS + 1
        with self._lock:
            for key in list(self._own):
                buckets = self._own[key]
                for slot in [s for s in buckets if s < oldest]:
                    del buckets[slot]
                    self._dirty = True
                if not buckets:
                    del self._own[key]

    def check(self, models: Mapping[str, Served]) -> None:
        """Log one warning when a window's flag rate passes alert_factor x the expected rate."""
        for served in models.values():
            key = (served.name, served.version)
            figures = self.figures(served)
            if figures["alert"] and key not in self._alerted and self._claim(key):
                self._alerted.add(key)
                log.warning(
                    "model %s version %s: %d of the last %d images flagged as out of "
                    "distribution in %g s (%.2f%%), %.1f times the expected %.2f%% "
                    "(SOFTSERVE_DRIFT_ALERT_FACTOR %g)",
                    served.name, served.version, figures["flagged"], figures["assessed"],
                    self.window, 100 * figures["flag_rate"], figures["flag_ratio"],
                    100 * figures["expected_flag_rate"], self.alert_factor,
                )  # fmt: skip
            elif not figures["alert"] and key in self._alerted:
                self._alerted.discard(key)
                self._release(key)

    def _marker(self, key: Key) -> Path | None:
        return None if self.folder is None else self.folder / f"alert-{key[0]}-{key[1]}"

    def _claim(self, key: Key) -> bool:
        """With other workers: whether this one is the one to raise the alarm (it holds the
        marker file, which names it; a marker whose worker is gone is taken over)."""
        marker = self._marker(key)
        if marker is None:
            return True
        for _ in range(2):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if _alive(marker):
                    return False
                with contextlib.suppress(OSError):
                    marker.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def _release(self, key: Key) -> None:
        marker = self._marker(key)
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()

    async def run(self, models: Callable[[], Mapping[str, Served]]) -> None:
        """Expire, share and check once a second, for as long as the app runs."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.expire()
                self.flush()
                self.check(models())
            except Exception:  # a full disk must not stop the predictions' bookkeeping
                log.exception("drift bookkeeping failed")

    def close(self) -> None:
        """This worker's file and alarms go with it."""
        for key in self._alerted:
            self._release(key)
        if self.folder is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()


def _read_window(path: Path, name: str, oldest: int, width: int) -> list[list[float]]:
    """The buckets of model version ``name`` in another worker's file, from slot ``oldest``;
    ValueError (and the like) when the file is not what this module writes."""
    windows = orjson.loads(path.read_bytes())["windows"]
    found = windows.get(name, {})
    out = []
    for slot, bucket in found.items():
        if int(slot) < oldest:
            continue
        if not isinstance(bucket, list) or len(bucket) != width:
            raise ValueError(f"a bucket of {path.name} is not {width} numbers")
        out.append([float(v) for v in bucket])
    return out


def _alive(marker: Path) -> bool:
    """Whether the worker named in ``marker`` still runs."""
    try:
        text = marker.read_text()
        if not text:  # created, its pid not written yet: alive unless left so for long
            return time.time() - marker.stat().st_mtime < 10
        os.kill(int(text), 0)
    except (OSError, ValueError):
        return False  # gone or unreadable
    return True


def _figures(served: Served, total: list[float], window: float, workers: int) -> dict[str, Any]:
    images, assessed, flagged, weight = total[:4]
    names = served.class_names
    detector = served.detector
    stats = detector.stats if detector is not None else None
    expected = stats.rate if stats is not None else None
    flag_rate = flagged / assessed if assessed else None
    ratio = flag_rate / expected if flag_rate is not None and expected else None
    shares = [c / weight for c in total[_CLASSES:]] if weight else None
    prior = list(stats.prior) if stats is not None and len(stats.prior) == len(names) else None
    return {
        "version": served.version,
        "window_seconds": window,
        "workers": workers,
        "images": int(images),
        "assessed": int(assessed),
        "flagged": int(flagged),
        "flag_rate": flag_rate,
        "expected_flag_rate": expected,
        "flag_ratio": ratio,
        "alert": False,
        "mean_intensity": total[_INTENSITY] / weight if weight else None,
        "training_intensity": stats.intensity if stats is not None else None,
        "class_shares": dict(zip(names, shares, strict=True)) if shares else None,
        "training_prior": dict(zip(names, prior, strict=True)) if prior else None,
        "psi": psi(shares, prior) if shares and prior else None,
        "mean_top_probability": total[_TOP] / weight if weight else None,
    }
