"""A training job's states and record, as the job stores keep them and the routes show them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from trainer.timestamps import parse_utc

if TYPE_CHECKING:  # not at run time: the training child imports this before NumPy may load
    from service.modelstore import Promotion

__all__ = [
    "CANCELLED_BEFORE_START", "INTERRUPTED", "STATUSES", "TERMINAL", "Job", "JobStatus", "outcome",
]  # fmt: skip

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL: frozenset[JobStatus] = frozenset({"succeeded", "failed", "cancelled"})
INTERRUPTED = "interrupted: the server stopped while the job was running"
CANCELLED_BEFORE_START = "cancelled before it started"


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
    request_id: str | None  # of the request that submitted it, as the access log shows it

    @property
    def latest(self) -> dict[str, Any] | None:
        """The record of the last epoch that finished, or None before the first."""
        return self.history[-1] if self.history else None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def promoted_within(self, seconds: float) -> bool:
        """Whether the job promoted its version less than ``seconds`` ago."""
        if self.status != "succeeded" or not self.promoted or self.finished_at is None:
            return False
        age = datetime.now(UTC) - parse_utc(self.finished_at)
        return age.total_seconds() < seconds

    @property
    def replica(self) -> str | None:
        """The replica whose worker ran the job (SOFTSERVE_REPLICA_NAME), from its owner id."""
        parts = (self.owner or "").split(":", 3)
        return parts[3] if len(parts) == 4 else None

    @property
    def worker(self) -> int | None:
        """The pid of the worker that ran the job."""
        parts = (self.owner or "").split(":", 3)
        return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the internal owner id but with the replica and worker that ran
        it, plus ``latest``."""
        out = asdict(self)
        del out["owner"]
        out["replica"], out["worker"] = self.replica, self.worker
        out["latest"] = self.latest
        return out


def outcome(promotion: Promotion | None) -> tuple[str | None, bool | None, str | None]:
    """The ``version``, ``promoted`` and ``promotion_reason`` a job ends with: all None when it
    made no version."""
    if promotion is None:
        return None, None, None
    return promotion.version, promotion.promoted, promotion.reason
