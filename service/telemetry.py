"""Prometheus metrics (prometheus-client), one CollectorRegistry per app so tests stay apart.

Request counts and latencies are counted as they happen; model quality and job states are read
at scrape time from the registry and the job store, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trainer.metrics import BINARY_METRICS, SPLITS

if TYPE_CHECKING:
    from service.registry import Served

__all__ = ["Telemetry"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """What /metrics exposes in Prometheus form."""

    def __init__(
        self,
        models: Callable[[], Mapping[str, Served]],
        job_counts: Callable[[], Mapping[str, int]],
        multiprocess_dir: Path | None = None,
        drift: Callable[[], Mapping[str, Mapping[str, Any]]] = dict,
        replica: str = "",
        database: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        """``database``: the stores' status (`AppState.database_status`). With
        ``multiprocess_dir`` (prometheus-client's multiprocess mode, which the
        PROMETHEUS_MULTIPROC_DIR environment variable must have switched on before the import),
        a scrape answered by any worker sums the requests of all of them."""
        own = CollectorRegistry(auto_describe=True)
        self.registry = own
        self._requests = Counter(
            "softserve_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=own,
        )
        self._latency = Histogram(
            "softserve_request_duration_seconds",
            "HTTP request latency by route and status",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=own,
        )
        self._predictions = Counter(
            "softserve_predictions",
            "Images classified, by model",
            ["model"],
            registry=own,
        )
        lines = Counter(
            "softserve_log_lines",
            "Log lines by kind (access: one per request; log: the service's records) and "
            "outcome: written, dropped (the queue was full) or sampled out",
            ["kind", "outcome"],
            registry=own,
        )
        self._lines = {
            (kind, outcome): lines.labels(kind, outcome)
            for kind, outcome in (
                ("access", "written"), ("access", "dropped"), ("access", "sampled_out"),
                ("log", "written"), ("log", "dropped"),
            )
        }  # fmt: skip
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._models: dict[str, Any] = {}
        # where the request counts are read from for JSON /metrics: without the gauges that
        # are computed at scrape time (the JSON report has computed those already)
        self._counted: list[Any] = [self._requests, self._latency]
        if multiprocess_dir is not None:  # values live in files there; collect from all of them
            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.registry, path=str(multiprocess_dir)
            )
            counted = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                counted, path=str(multiprocess_dir)
            )
            self._counted = [counted]
        self.registry.register(_StateCollector(models, job_counts, replica, database))
        self.registry.register(_DriftCollector(drift))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        pair = self._children.get(key)
        if pair is None:  # labels() costs a lock and a dict walk; do it once per key
            labels = (route, method, str(status))
            pair = (self._requests.labels(*labels), self._latency.labels(*labels))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def requests(self) -> list[dict[str, Any]]:
        """Per route and method, over every worker since start: the requests by status class
        and the latency percentiles, interpolated within the histogram's buckets (what the
        console's Service page shows; Prometheus has the buckets themselves)."""
        counts: dict[tuple[str, str], dict[str, float]] = {}
        buckets: dict[tuple[str, str], dict[float, float]] = {}
        for metric in (m for source in self._counted for m in source.collect()):
            for sample in metric.samples:
                labels = sample.labels
                if "route" not in labels:
                    continue
                key = (labels["route"], labels["method"])
                if sample.name == "softserve_requests_total":
                    klass = f"{labels['status'][:1]}xx"
                    row = counts.setdefault(key, {})
                    row[klass] = row.get(klass, 0.0) + sample.value
                elif sample.name == "softserve_request_duration_seconds_bucket":
                    le = float(labels["le"])
                    per = buckets.setdefault(key, {})
                    per[le] = per.get(le, 0.0) + sample.value
        out = []
        for (route, method), by_class in sorted(counts.items()):
            cumulative = sorted(buckets.get((route, method), {}).items())
            out.append({
                "route": route, "method": method, "count": int(sum(by_class.values())),
                "by_status": {k: int(v) for k, v in sorted(by_class.items())},
                **{f"p{q}_ms": _quantile(cumulative, q / 100) for q in (50, 90, 99)},
            })  # fmt: skip
        return out

    def log_lines(self, kind: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` log lines of ``kind`` (access, log) that were ``outcome``."""
        self._lines[kind, outcome].inc(n)

    def predicted(self, model: str, n: int) -> None:
        child = self._models.get(model)
        if child is None:
            child = self._models[model] = self._predictions.labels(model)
        child.inc(n)


class _StateCollector(Collector):
    def __init__(
        self,
        models: Callable[[], Mapping[str, Served]],
        job_counts: Callable[[], Mapping[str, int]],
        replica: str = "",
        database: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self._models = models
        self._job_counts = job_counts
        self._replica = replica
        self._database = database

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand; nothing to pre-register

    def collect(self) -> Iterable[Metric]:
        labels = ["model", "version", "split"]
        loss = GaugeMetricFamily(
            "softserve_model_loss", "Cross-entropy of the active version", labels=labels
        )
        acc = GaugeMetricFamily(
            "softserve_model_accuracy", "Accuracy of the active version", labels=labels
        )
        binary = GaugeMetricFamily(
            "softserve_model_binary_metric",
            "Binary metrics of the active version",
            labels=[*labels, "metric"],
        )
        active = GaugeMetricFamily(
            "softserve_model_active_info",
            "The version this worker serves, per model (1)",
            labels=["replica", "model", "version"],
        )
        for name, served in sorted(self._models().items()):
            active.add_metric([self._replica, name, served.version], 1)
            for split in SPLITS:
                values = served.artifact.metrics(split)
                key = [name, served.version, split]
                if (value := values.get("loss")) is not None:
                    loss.add_metric(key, float(value))
                if (value := values.get("accuracy")) is not None:
                    acc.add_metric(key, float(value))
                for metric in BINARY_METRICS:
                    if (value := values.get(metric)) is not None:
                        binary.add_metric([*key, metric], float(value))
        jobs = GaugeMetricFamily("softserve_jobs", "Training jobs by state", labels=["state"])
        try:
            counts = self._job_counts()
        except Exception:  # the job store is away (a lost database): the rest still scrapes
            counts = {}
        for state, count in sorted(counts.items()):
            jobs.add_metric([state], count)
        replica = GaugeMetricFamily(
            "softserve_replica_info",
            "The replica answering (SOFTSERVE_REPLICA_NAME)",
            labels=["replica"],
        )
        replica.add_metric([self._replica], 1)
        yield from (loss, acc, binary, jobs, replica, active, *self._database_gauges())

    def _database_gauges(self) -> Iterable[Metric]:
        status = self._database()
        if not status:
            return
        info = GaugeMetricFamily(
            "softserve_database_info",
            "Where jobs and models are kept (backend: sqlite or postgresql)",
            labels=["replica", "backend"],
        )
        info.add_metric([self._replica, str(status.get("backend"))], 1)
        yield info
        if (connected := status.get("listener_connected")) is not None:
            yield GaugeMetricFamily(
                "softserve_database_listener_connected",
                "1 while this worker's LISTEN connection to the database is up",
                value=1.0 if connected else 0.0,
            )
        if (age := status.get("last_sync_seconds_ago")) is not None:
            yield GaugeMetricFamily(
                "softserve_database_last_sync_age_seconds",
                "Seconds since this worker last synchronised its models with the database",
                value=float(age),
            )


# Each drift figure in Prometheus: (name, help, key in the figures).
_DRIFT_GAUGES = (
    ("softserve_drift_images", "Images answered in the drift window", "images"),
    ("softserve_drift_flag_rate", "Out-of-distribution flag rate in the drift window",
     "flag_rate"),
    ("softserve_drift_expected_flag_rate", "The artifact's expected flag rate",
     "expected_flag_rate"),
    ("softserve_drift_flag_ratio", "Flag rate / expected flag rate in the drift window",
     "flag_ratio"),
    ("softserve_drift_alert", "1 while the flag ratio is past SOFTSERVE_DRIFT_ALERT_FACTOR",
     "alert"),
    ("softserve_drift_mean_intensity", "Mean pixel (0..1) in the drift window", "mean_intensity"),
    ("softserve_drift_training_intensity", "Mean pixel (0..1) of the training images",
     "training_intensity"),
    ("softserve_drift_class_psi", "Population stability index of the predicted classes "
     "against the training prior", "psi"),
    ("softserve_drift_mean_top_probability", "Mean top-class probability in the drift window",
     "mean_top_probability"),
)  # fmt: skip


class _DriftCollector(Collector):
    """The drift window's figures (service.drift), merged over the workers at scrape time."""

    def __init__(self, figures: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self._figures = figures

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        figures = self._figures()
        for name, text, key in _DRIFT_GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["model", "version"])
            for model, values in sorted(figures.items()):
                if (value := values.get(key)) is not None:
                    gauge.add_metric([model, values["version"]], float(value))
            yield gauge


def _quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile in ms of a histogram given as sorted (upper bound, cumulative count),
    linear within its bucket (the last, unbounded bucket answers with its lower bound)."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if upper == float("inf") or count == below:
                return round(lower * 1000, 3)
            return round((lower + (upper - lower) * (rank - below) / (count - below)) * 1000, 3)
        lower, below = upper, count
    return round(lower * 1000, 3)
