"""The shared PostgreSQL of SOFTSERVE_DATABASE_URL: jobs and models for every replica.

`Database` opens the two stores (`service.jobs.postgres`, `service.modelstore.postgres`) and
runs a listener thread on its own connection: ``LISTEN softserve_models``, and each
notification (a promotion or an activation, on any replica) refreshes this worker's models at
once. A notification sent while the listener is disconnected is lost, so the listener also
resynchronises after every (re)connection, and the app's watcher re-reads the active pointers
every SOFTSERVE_WATCH_INTERVAL regardless.

When the database fails, predictions go on from memory and readiness holds; the failure shows in
`status()` (the health body and /metrics), and the calls that need the database (training,
cancelling, activating) answer 503 (`unavailable`). The listener reconnects by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool

from service.errors import ServiceUnavailable
from service.jobs.postgres import PostgresJobStore
from service.modelstore.postgres import CHANNEL, PostgresModelStore

__all__ = ["FAILURES", "Database", "unavailable"]

log = logging.getLogger("softserve.database")

# What a call raises when the database cannot be reached or dropped the connection.
FAILURES: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)
_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between the listener's reconnection attempts


def unavailable(error: Exception) -> ServiceUnavailable:
    """The 503 a call that needs the database answers while it is unreachable."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ServiceUnavailable(
        f"the database is unreachable ({first[:200]}); predictions go on from memory, and "
        "this works again once it is back",
        code="database_unavailable",
    )


class Database:
    """Both stores on one database, and the listener that keeps this worker's models current."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.models = PostgresModelStore(url)
        try:
            self.jobs = PostgresJobStore(url)
        except BaseException:
            self.models.close()
            raise
        self.location = self.models.location  # without the password
        self.listening = False
        self.last_sync: float | None = None  # time.time() of the last resynchronisation
        self.error: str | None = None  # the listener's last failure, while disconnected
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def listen(self, changed: Callable[[], object]) -> None:
        """Start the listener thread; ``changed()`` runs (in it) after each (re)connection and
        each notification."""
        self._thread = threading.Thread(
            target=self._listen, args=(changed,), name="softserve-listen", daemon=True
        )
        self._thread.start()

    def _listen(self, changed: Callable[[], object]) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening, self.error, attempt = True, None, 0
                    self._sync(changed)  # what was missed while disconnected
                    while not self._stop.is_set():
                        if any(True for _ in conn.notifies(timeout=1.0, stop_after=1)):
                            self._sync(changed)
            except Exception as e:  # lost, refused, or failing: retry; never end the thread
                if self.listening or self.error is None:
                    log.warning("database listener disconnected: %s", str(e).splitlines()[0])
                self.listening = False
                self.error = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                self._stop.wait(_RETRY[min(attempt, len(_RETRY) - 1)])
                attempt += 1
        self.listening = False

    def _sync(self, changed: Callable[[], object]) -> None:
        try:
            changed()
            self.last_sync = time.time()
        except Exception:  # the watcher tries again within its interval
            log.exception("refreshing models after a database notification failed")

    def status(self) -> dict[str, Any]:
        """The backend, whether this worker's listener is connected, and how long ago it last
        synchronised its models (for the health body and /metrics; no password)."""
        return {
            "backend": "postgresql",
            "location": self.location,
            "listener_connected": self.listening,
            "last_sync_seconds_ago": (
                None if self.last_sync is None else round(time.time() - self.last_sync, 3)
            ),
            "error": self.error,
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.models.close()
        self.jobs.close()
