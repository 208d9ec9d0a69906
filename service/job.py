"""A training job's states and record, as service.jobstore keeps them and the routes show them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

__all__ = ["INTERRUPTED", "STATUSES", "TERMINAL", "Job", "JobStatus"]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
INTERRUPTED = "interrupted: the server stopped while the job was running"


@dataclass(frozen=True)
class Job:
    """One training job as the store holds it."""

    id: str
    model: str
    params: dict[str, Any]
    force: bool
    status: JobStatus
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str  # to the microsecond, so a watcher sees every change
    progress: dict[str, Any] | None
    history: list[dict[str, Any]]
    error: str | None
    version: str | None
    promoted: bool | None
    promotion_reason: str | None
    cancel_requested: bool
    owner: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the internal owner id, plus ``latest``: the last epoch or None."""
        out = asdict(self)
        del out["owner"]
        out["latest"] = self.history[-1] if self.history else None
        return out
