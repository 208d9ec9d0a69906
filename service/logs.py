"""Logs off the event loop: one line per request (the access log) and per log record, as JSON or
text, written by a background thread in batches.

The event loop only appends a tuple to a bounded queue (a deque: no lock, no wake-up); a thread
drains it every few milliseconds, formats the lines (orjson) and writes them with as few
``write`` calls as it can, each ending at a line's end and at most ``PIPE_BUF`` bytes, so lines
from several workers sharing one pipe or file never interleave. When the queue is full the line
is dropped and counted; a request never waits for its line. `stop` writes what is left.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import re
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import orjson

__all__ = [
    "STDERR",
    "AccessLog",
    "LogFormat",
    "Request",
    "Writer",
    "configure",
    "format_access",
    "format_record",
    "prepare",
    "request_id",
    "stream_handler",
    "uvicorn_config",
]

LogFormat = Literal["json", "text"]
# A record's message and traceback are cut so that its line fits one write that no other writer
# can split (PIPE_BUF); an access line's path is cut in edge.py.
MAX_MESSAGE, MAX_TRACEBACK = 1000, 2500
STDERR = 2  # the file descriptor lines go to: what a container or a process manager collects
PIPE_BUF = 4096  # the largest write a pipe keeps whole among concurrent writers (POSIX minimum)
DRAIN_EVERY = 0.02  # seconds between the writer's looks at its queue
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_PREFIX = secrets.token_hex(6)  # this process's ids: unique across workers and restarts
_SEQUENCE = itertools.count(1)


def request_id(given: bytes | None) -> str:
    """The caller's X-Request-ID when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -``, else a
    new one."""
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return f"{_PREFIX}-{next(_SEQUENCE)}"


class Request(NamedTuple):
    """What the access log says of one request (the fields after ``status`` may be absent)."""

    started: float  # time.time() when it arrived
    request_id: str
    method: str
    path: str
    status: int
    ms: float
    model: str | None = None
    version: str | None = None
    images: int | None = None
    error: str | None = None


_second: list[tuple[int, str]] = [(-1, "")]  # the last second formatted, and its text
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


def _when(seconds: float) -> str:
    """``2026-12-01T21:48:34.144Z``: ISO 8601 UTC to the millisecond (the second's text is kept
    from the line before, which is almost always in the same second)."""
    whole = int(seconds)
    cached, text = _second[0]
    if whole != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second[0] = (whole, text)
    return text + _MILLIS[int((seconds - whole) * 1000)]


def format_access(line: Request, form: LogFormat) -> bytes:
    if form == "json":
        fields: dict[str, Any] = {
            "time": _when(line.started), "type": "access", "request_id": line.request_id,
            "method": line.method, "path": line.path, "status": line.status,
            "ms": int(line.ms * 1000 + 0.5) / 1000,
        }  # fmt: skip
        if line.model is not None:
            fields |= {"model": line.model, "version": line.version, "images": line.images}
        if line.error is not None:
            fields["error"] = line.error
        return orjson.dumps(fields) + b"\n"
    text = (
        f"{_when(line.started)} {line.method} {_printable(line.path)} {line.status} "
        f"{line.ms:.2f}ms id={line.request_id}"
    )
    if line.model is not None:
        text += f" model={line.model} version={line.version} images={line.images}"
    if line.error is not None:
        text += f" error={line.error}"
    return text.encode("utf-8", "replace") + b"\n"


def prepare(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message and traceback made text now, on the logging thread (its
    arguments may change before the writer reads them), each cut to what one line holds."""
    record.msg = _cut(record.getMessage(), MAX_MESSAGE)
    record.args = None
    if record.exc_info:
        failure = "".join(traceback.format_exception(*record.exc_info))
        record.exc_text = (
            failure
            if len(failure) <= MAX_TRACEBACK
            else (
                "...\n" + failure[-MAX_TRACEBACK:]  # the end of a traceback says the most
            )
        )
        record.exc_info = None
    return record


def format_record(record: logging.LogRecord, form: LogFormat) -> bytes:
    """One line of a `prepare`d record; a record that cannot be written as it is (a lone
    surrogate, say) is written with its message escaped rather than lost."""
    message = record.getMessage()
    failure = record.exc_text
    try:
        if form == "json":
            fields: dict[str, Any] = {
                "time": _when(record.created), "type": "log", "level": record.levelname.lower(),
                "logger": record.name, "message": message,
            }  # fmt: skip
            if failure:
                fields["exception"] = failure
            return orjson.dumps(fields, default=str) + b"\n"
        text = f"{_when(record.created)} {record.levelname} {record.name}: {_printable(message)}"
        return (text + (f"\n{failure.rstrip()}" if failure else "")).encode() + b"\n"
    except (TypeError, ValueError):  # orjson refuses it, or encode() does
        record.msg = ascii(message)
        record.exc_text = ascii(failure) if failure else None
        return format_record(record, form)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a newline in a path cannot forge a line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _format(items: list[Request | logging.LogRecord], form: LogFormat) -> tuple[bytearray, int]:
    """The lines of a batch, and how many are access lines.

    Each line goes into one buffer as soon as it is made: a batch of separate bytes objects,
    all alive at once, cost orjson ten times as much per line in memory allocation. JSON access
    lines are `format_access` unrolled, the time's second formatted once.
    """
    out, requests = bytearray(), 0
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    second, prefix = -1, ""
    for item in items:
        if not isinstance(item, Request):
            out += format_record(item, form)
            continue
        requests += 1
        if form != "json":
            out += format_access(item, form)
            continue
        started, rid, method, path, status, ms, model, version, images, error = item
        whole = int(started)
        if whole != second:
            second, prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        fields: dict[str, Any] = {
            "time": prefix + _MILLIS[int((started - whole) * 1000)], "type": "access",
            "request_id": rid, "method": method, "path": path, "status": status,
            "ms": int(ms * 1000 + 0.5) / 1000,
        }  # fmt: skip
        if model is not None:
            fields["model"], fields["version"], fields["images"] = model, version, images
        if error is not None:
            fields["error"] = error
        out += dumps(fields, option=newline)
    return out, requests


class Writer:
    """Lines for one file descriptor, formatted and written by a thread of its own.

    ``put`` may be called from any thread; it never blocks. ``count(kind, outcome, n)`` is told
    what became of the lines, by kind (``access`` or ``log``): written or dropped. The thread
    writes what is queued every ``interval`` seconds (default `DRAIN_EVERY`).
    """

    def __init__(
        self,
        fd: int,
        form: LogFormat,
        *,
        capacity: int,
        count: Callable[[str, str, int], None] = lambda kind, outcome, n: None,
        interval: float | None = None,
    ) -> None:
        self.fd, self.form, self.capacity, self.count = fd, form, capacity, count
        self.interval = DRAIN_EVERY if interval is None else interval
        self._queue: deque[Request | logging.LogRecord] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, item: Request | logging.LogRecord) -> bool:
        """Queue a line; False (and counted) when the queue is full. While no thread runs (before
        the app starts, after it stopped) the line is written at once."""
        if self._thread is None:
            self._queue.append(item)
            self.drain()
            return True
        if len(self._queue) >= self.capacity:
            self.count("access" if isinstance(item, Request) else "log", "dropped", 1)
            return False
        self._queue.append(item)
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="softserve-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Write every line queued so far, then end the thread (blocking: call it off the event
        loop). A thread still writing after ``timeout`` (a stalled stderr) is left to finish."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join(timeout)
            if thread.is_alive():
                return
            self._thread = None
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain_safely()
        self._drain_safely()

    def _drain_safely(self) -> None:
        try:
            self.drain()
        except Exception:  # a line that cannot be written must not end the writing
            self.count("log", "dropped", 1)

    def drain(self) -> int:
        """Format and write what is queued; returns the lines written."""
        queue = self._queue
        items = [queue.popleft() for _ in range(len(queue))]  # more may come meanwhile: later
        if not items:
            return 0
        lines, requests = _format(items, self.form)
        write_lines(self.fd, lines)
        if requests:
            self.count("access", "written", requests)
        if len(items) > requests:
            self.count("log", "written", len(items) - requests)
        return len(items)


def write_lines(fd: int, data: bytes | bytearray) -> None:
    """Whole lines to ``fd``, in writes of at most PIPE_BUF bytes (a longer line alone): writes
    that size to a pipe are atomic, so two processes' lines never interleave."""
    view = memoryview(data)
    start, end = 0, len(data)
    while start < end:
        stop = start + PIPE_BUF
        if stop < end:
            cut = data.rfind(b"\n", start, stop)
            stop = cut + 1 if cut >= start else data.index(b"\n", stop) + 1
        else:
            stop = end
        _write_all(fd, view[start:stop])
        start = stop


def _write_all(fd: int, view: memoryview) -> None:
    with contextlib.suppress(OSError):  # a closed stderr must not end the server
        while view:
            view = view[os.write(fd, view) :]


class AccessLog:
    """The access log: every request's line goes to the writer, or is sampled out (counted)."""

    def __init__(self, writer: Writer, *, enabled: bool, sample: float) -> None:
        self.writer, self.enabled, self.sample = writer, enabled, sample

    def log(self, line: Request) -> None:
        if not self.enabled:
            return
        if self.sample < 1.0 and random.random() >= self.sample:
            self.writer.count("access", "sampled_out", 1)
            return
        self.writer.put(line)


class _Handler(logging.Handler):
    """The service's own log records, into the writer's queue (written whole, in order with the
    access lines); straight to the stream while the writer is not running."""

    def __init__(self, writer: Writer) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.put(prepare(record))
        except Exception:
            self.handleError(record)


def stream_handler(form: LogFormat) -> logging.Handler:
    """A handler that writes each record at once, in the service's format: uvicorn's own lines
    before an app's writer runs, and after it stopped."""
    return _Handler(Writer(STDERR, form, capacity=1))


def uvicorn_config(form: LogFormat, level: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: its lines in the service's format from the first one, in every
    worker process (each applies it when it starts); its own access log off."""
    level = level.upper()
    ours = {"handlers": ["softserve"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"softserve": {"()": "service.logs.stream_handler", "form": form}},
        "loggers": {
            "uvicorn": ours,
            "uvicorn.error": {"level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "softserve": ours,
        },
    }


def default_format(given: LogFormat | None) -> LogFormat:
    """``given``, else text on a terminal and JSON otherwise (a container, a file, a pipe)."""
    if given is not None:
        return given
    return "text" if os.isatty(STDERR) else "json"


def configure(writer: Writer, level: str) -> Callable[[], None]:
    """Send the service's and uvicorn's log records through ``writer``, and silence uvicorn's own
    access log (the access log is ours: one line per request, whichever way the server started).
    Returns what puts the previous configuration back."""
    handler = _Handler(writer)
    names = ("softserve", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (lg.handlers[:], lg.propagate, lg.level, lg.disabled)
        for name in names
        if (lg := logging.getLogger(name))
    }
    numeric = logging.getLevelName(level.upper())
    for name in ("softserve", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    error = logging.getLogger("uvicorn.error")
    error.handlers, error.propagate = [], True  # through "uvicorn", once
    access = logging.getLogger("uvicorn.access")
    access.handlers, access.propagate, access.disabled = [], False, True

    def restore() -> None:
        for name, (handlers, propagate, old_level, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate, logger.disabled = handlers, propagate, disabled
            logger.setLevel(old_level)

    return restore
