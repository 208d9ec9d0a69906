"""Service settings: one pydantic-settings class, read from ``SOFTSERVE_*`` environment variables.

os.environ is read nowhere else in the service; tests build a `Settings` and pass it to
`create_app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob of the service. The README's settings table lists these."""

    model_config = SettingsConfigDict(env_prefix="SOFTSERVE_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address python -m service binds (container: all)")
    # not SOFTSERVE_PORT: Kubernetes sets that to "tcp://..." for a Service named softserve
    http_port: int = Field(8000, ge=1, le=65535, description="Port python -m service listens on")
    workers: int = Field(1, ge=1, le=64, description="Worker processes of python -m service")
    model_dir: Path = Field(Path("models"), description="Folder of <name>.npz artifacts to serve")
    state_dir: Path | None = Field(
        None, description="Job store folder; default: a 'state' folder beside the model folder"
    )
    seed_dir: Path | None = Field(
        None,
        description="Folder of models copied into the model folder when it has never had them "
        "(the container's first start); unset: none",
    )
    data_dir: Path | None = Field(
        None, description="Training data folder (IDX files); default: the trainer's lookup"
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for /train, cancel and activate; unset: no auth"
    )
    default_model: str = Field("softmax", description="Model /predict uses without ?model=")
    required_models: Annotated[tuple[str, ...], NoDecode] = Field(
        ("softmax", "binary"), description="Models that must be loaded for /health/ready"
    )
    max_body_bytes: int = Field(8 * 2**20, ge=1024, description="Largest request body accepted")
    max_batch: int = Field(1024, ge=1, description="Most images in one /predict request")
    max_image_pixels: int = Field(
        4096 * 4096, ge=784, description="Largest decoded PNG/JPEG (width x height)"
    )
    train_concurrency: int = Field(1, ge=1, le=64, description="Training jobs run at once")
    train_queue_size: int = Field(8, ge=1, le=10000, description="Jobs that may wait queued")
    train_max_epochs: int = Field(200, ge=1, le=1000, description="Largest epochs a job may ask")
    jobs_kept: int = Field(1000, ge=10, description="Finished jobs remembered in the store")
    watch_interval: float = Field(
        1.0, gt=0, le=3600, description="Seconds between checks of the model folder"
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Origins allowed by CORS; none: closed"
    )
    log_level: str = Field("info", description="uvicorn log level")
    prometheus_multiproc_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="prometheus-client's folder for metrics shared by several workers "
        "(python -m service --workers N sets it up)",
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
