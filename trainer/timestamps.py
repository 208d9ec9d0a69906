"""UTC timestamps as every record here writes them: ISO 8601 ending in ``Z``.

Artifacts (``created_at``) and the service's job records use these, so one format is parsed
everywhere: to the second (``2026-11-22T03:15:00Z``), or to the microsecond where a watcher must
see every change.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["is_utc_iso", "parse_utc", "utc_now_iso"]


def utc_now_iso(*, precise: bool = False) -> str:
    """Now, e.g. ``2026-11-22T03:15:00Z``, or with ``precise`` ``2026-11-22T03:15:00.123456Z``."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S.%fZ}" if precise else f"{now:%Y-%m-%dT%H:%M:%SZ}"


def parse_utc(text: str) -> datetime:
    """An aware datetime from an ISO 8601 time with an offset; ValueError for anything else."""
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError(f"{text[:40]!r} has no UTC offset")
    return moment


def is_utc_iso(value: object) -> bool:
    """Whether ``value`` is an ISO 8601 time string at offset zero."""
    if not isinstance(value, str):
        return False
    try:
        return not parse_utc(value).utcoffset()
    except ValueError:
        return False
