"""Service settings: one pydantic-settings class, read from ``SOFTSERVE_*`` environment variables.

os.environ is read nowhere else in the service; tests build a `Settings` and pass it to
`create_app`.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trainer.config import MAX_EPOCHS
from trainer.contract import N_FEATURES

__all__ = ["Settings", "settings_table"]


class Settings(BaseSettings):
    """Every knob of the service; docs/configuration.md shows `settings_table()` of them."""

    model_config = SettingsConfigDict(env_prefix="SOFTSERVE_", extra="ignore", frozen=True)

    host: str = Field(
        "127.0.0.1", description="address `python -m service` binds (the container: `0.0.0.0`)"
    )
    # not SOFTSERVE_PORT: Kubernetes sets that to "tcp://..." for a Service named softserve
    http_port: int = Field(
        8000,
        ge=1,
        le=65535,
        description="port `python -m service` listens on, and the health probe asks; not "
        "`SOFTSERVE_PORT`, which Kubernetes sets for a Service named `softserve`",
    )
    workers: int = Field(1, ge=1, le=64, description="worker processes of `python -m service`")
    model_dir: Path = Field(
        Path("models"),
        description="folder of `<name>.npz` artifacts served, and their kept versions; a "
        "relative path is taken from the folder the server starts in",
    )
    state_dir: Path | None = Field(
        None,
        description="job store folder (`jobs.sqlite3`), made by the first job; unset: `state` "
        "beside the model folder",
    )
    seed_dir: Path | None = Field(
        None,
        description="folder of models copied into the model folder when it has never had them "
        "(the container sets it to the shipped models)",
    )
    data_dir: Path | None = Field(
        None,
        description="training data folder (the four IDX files); unset: the trainer's lookup "
        "(docs/training.md)",
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token for `/train`, cancelling and activating; unset: no auth"
    )
    default_model: str = Field("softmax", description="model `/predict` uses without `?model=`")
    required_models: Annotated[tuple[str, ...], NoDecode] = Field(
        ("softmax", "binary"),
        description="models `/health/ready` waits for (comma-separated, or a JSON list)",
    )
    max_body_bytes: int = Field(
        8 * 2**20, ge=1024, description="largest request body, in bytes (413 beyond)"
    )
    max_batch: int = Field(1024, ge=1, description="most images in one request (413 beyond)")
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=N_FEATURES,
        description="largest PNG or JPEG, width x height, checked before decoding (413 beyond)",
    )
    ood: bool = Field(
        True,
        description="assess every image against the model's training data and flag the unusual "
        "(out of distribution); off: no assessment, and `strict` is refused",
    )
    drift_window: float = Field(
        300.0,
        ge=0,
        le=7 * 86400,
        description="seconds of traffic the drift figures cover (/metrics, /models/{name}/drift); "
        "0 turns them off",
    )
    drift_alert_factor: float = Field(
        3.0,
        gt=1,
        description="one warning line when a window's out-of-distribution flag rate passes this "
        "multiple of the expected rate",
    )
    train_concurrency: int = Field(
        1, ge=1, le=64, description="jobs training at once, across all workers"
    )
    train_queue_size: int = Field(
        8, ge=1, le=10000, description="jobs that may wait queued (429 beyond)"
    )
    train_max_epochs: int = Field(
        200, ge=1, le=MAX_EPOCHS, description="largest `epochs` a job may ask for (422 beyond)"
    )
    jobs_kept: int = Field(1000, ge=10, description="finished jobs remembered in the store")
    watch_interval: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="seconds between each worker's looks at the model folder for new versions",
    )
    database_url: SecretStr | None = Field(
        None,
        description="`postgresql://user:password@host:5432/db`: jobs and models in PostgreSQL "
        "15+, shared by every replica (docs/deployment.md); unset: SQLite and the model folder",
    )
    replica_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="this server's name among replicas: in every response's "
        "X-Softserve-Replica header, /metrics and the jobs it runs",
        json_schema_extra={"shown_default": "the hostname"},
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="origins CORS allows (comma-separated, or a JSON list); none: closed"
    )
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="`json` (one object a line) or `text`; unset: text when stderr is a "
        "terminal, else JSON",
    )
    access_log: bool = Field(
        True, description="one line per request, off the event loop (`on` or `off`)"
    )
    access_log_sample: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of requests the access log writes, for very busy servers; the rest "
        "are counted in /metrics",
    )
    log_queue_size: int = Field(
        10000,
        ge=1,
        description="lines waiting to be written; beyond, a line is dropped and counted in "
        "/metrics (a request never waits for its line)",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info",
        description="level of the service's and uvicorn's log lines: critical, error, warning, "
        "info, debug or trace",
    )
    prometheus_multiproc_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where several workers share their Prometheus counts: `python -m service "
        "--workers N` makes `<state>/prometheus`; under `uvicorn --workers N` set it to an "
        "empty folder yourself",
    )

    @field_validator("required_models", "cors_origins", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        """A list from the environment: comma-separated (``softmax,binary``) or JSON."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)  # a ValueError becomes a validation error naming the field
        return tuple(part.strip() for part in value.split(",") if part.strip())

    @property
    def job_store_dir(self) -> Path:
        """Where the job database lives: `state_dir`, or 'state' beside the model folder."""
        if self.state_dir is not None:
            return self.state_dir
        return self.model_dir.resolve().parent / "state"


def settings_table() -> str:
    """The Markdown table of every setting, as docs/configuration.md shows it."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias or f"SOFTSERVE_{name.upper()}"
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = str(extra.get("shown_default", "")) or _shown(field.default)
        rows.append(f"| `{variable}` | {default} | {field.description} |")
    return "\n".join(rows)


def _shown(default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "`on`" if default else "`off`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`" if default else "none"
    if isinstance(default, str | Path):
        return f"`{default}`"
    return str(default)
