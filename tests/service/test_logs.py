"""The access log and request ids: the line of each kind of request, ids given and made, the
formats and settings, the writer's whole lines and counted drops, and the accounting of every
request under load. Against real uvicorn processes, whose stderr the harness keeps."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.logs import (
    PIPE_BUF,
    Request,
    Writer,
    format_access,
    prepare,
    request_id,
    write_lines,
)
from tests.support.requests import png
from tests.support.server import Server, run_server
from tests.support.training import AUTH, TOKEN, image
from tests.synthetic import write_dataset

PIXELS = {"pixels": [0] * 784}


def lines(server: Server, kind: str = "access") -> list[dict[str, Any]]:
    """The JSON lines of ``kind`` the server has written so far."""
    found = []
    for text in server.log_text().splitlines():
        if text.startswith("{"):
            line = orjson.loads(text)
            if line.get("type") == kind:
                found.append(line)
    return found


def line_of(server: Server, rid: str) -> dict[str, Any]:
    """The one access line of request ``rid`` (waiting for the writer to write it)."""
    from tests.support.server import wait_for

    found = wait_for(lambda: [x for x in lines(server) if x["request_id"] == rid], timeout=30)
    assert len(found) == 1, found
    return found[0]


def log_lines(server: Server, rid: str = "scrape") -> dict[tuple[str, str], float]:
    """The log-line counters, asked by a request of id ``rid``."""
    with server.client() as client:
        headers = {"Accept": "text/plain", "X-Request-ID": rid}
        text = client.get("/metrics", headers=headers).text
    return {
        (s.labels["kind"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "softserve_log_lines_total"
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("logs")
    env = {
        "SOFTSERVE_LOG_FORMAT": "json",
        "SOFTSERVE_API_TOKEN": TOKEN,
        "SOFTSERVE_DATA_DIR": str(write_dataset(root / "data")),
        "SOFTSERVE_MAX_BODY_BYTES": "65536",
    }
    with run_server(root, env) as running:  # uvicorn service.app:app, uvicorn's own logging on
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# --- the line of each kind of request --------------------------------------------------------


def test_a_prediction_line_names_the_model_version_and_images(
    server: Server, client: httpx.Client
) -> None:
    answer = client.post(
        "/predict", json={"images": [image(), image()]}, headers={"X-Request-ID": "p-1"}
    )
    assert answer.status_code == 200
    line = line_of(server, "p-1")
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status"] == 200
    assert (line["model"], line["version"], line["images"]) == (
        "softmax",
        answer.json()["version"],
        2,
    )
    assert line["ms"] > 0 and line["time"].endswith("Z")
    assert "error" not in line


def test_a_multipart_upload_through_fastapi_is_logged_the_same_way(
    server: Server, client: httpx.Client
) -> None:
    files = [("file", ("a.png", png(image()), "image/png"))] * 3
    answer = client.post("/models/binary/predict", files=files, headers={"X-Request-ID": "m-1"})
    assert answer.status_code == 200
    line = line_of(server, "m-1")
    assert (line["model"], line["images"], line["status"]) == ("binary", 3, 200)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/predict", {"pixels": [0] * 783}, 422, "invalid_pixels"),
        ("GET", "/models/nope", None, 404, "unknown_model"),
        ("GET", "/nowhere", None, 404, "not_found"),
        ("POST", "/train", {"epochs": 0}, 422, "invalid_request"),
    ],
)
def test_an_error_line_names_its_code(
    server: Server, client: httpx.Client, method: str, path: str, body: Any, status: int, code: str
) -> None:
    rid = f"e-{code}-{status}-{len(path)}"
    headers = {"X-Request-ID": rid, **AUTH}
    answer = client.request(method, path, json=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"]["request_id"] == rid
    line = line_of(server, rid)
    assert (line["status"], line["error"], line["path"]) == (status, code, path)


def test_a_body_over_the_limit_is_logged_as_413(server: Server, client: httpx.Client) -> None:
    """Refused by its Content-Length on the fast path, and by counting a chunked body (no
    length) on its way to FastAPI: one line each, naming the error."""
    declared = client.post(
        "/predict", content=bytes(70_000), headers={"X-Request-ID": "big-1",
        "Content-Type": "application/octet-stream"},
    )  # fmt: skip

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    streamed = client.post(
        "/train", content=chunks(), headers={**AUTH, "X-Request-ID": "big-2",
        "Content-Type": "application/json"},
    )  # fmt: skip
    for answer, rid, path in ((declared, "big-1", "/predict"), (streamed, "big-2", "/train")):
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"
        line = line_of(server, rid)
        assert (line["status"], line["error"], line["path"]) == (413, "payload_too_large", path)


def test_a_training_job_keeps_the_id_of_the_request_that_submitted_it(
    server: Server, client: httpx.Client
) -> None:
    answer = client.post("/train", json={"epochs": 1}, headers={**AUTH, "X-Request-ID": "t-1"})
    assert answer.status_code == 202
    job = answer.json()
    assert job["request_id"] == "t-1"
    assert client.get(f"/train/{job['job_id']}").json()["request_id"] == "t-1"
    assert line_of(server, "t-1")["status"] == 202
    client.delete(f"/train/{job['job_id']}", headers=AUTH)


def test_one_line_per_request_under_plain_uvicorn(server: Server, client: httpx.Client) -> None:
    """The fixture's server is ``uvicorn service.app:app`` with uvicorn's logging at info: its
    own access line would read '"GET /health/live HTTP/1.1" 200'."""
    for _ in range(5):
        client.get("/health/live", headers={"X-Request-ID": "one-line"})
    from tests.support.server import wait_for

    wait_for(lambda: len([x for x in lines(server) if x["request_id"] == "one-line"]) == 5)
    client.get("/health/live", headers={"X-Request-ID": "one-line-after"})
    line_of(server, "one-line-after")  # written after the five: nothing more of theirs comes
    assert len([x for x in lines(server) if x["request_id"] == "one-line"]) == 5
    assert not [x for x in lines(server, "log") if x["logger"] == "uvicorn.access"]
    mentions = [t for t in server.log_text().splitlines() if "/health/live" in t]
    assert all(orjson.loads(t)["type"] == "access" for t in mentions)  # no other line names it


def test_the_services_own_lines_are_json_too(server: Server) -> None:
    own = lines(server, "log")
    assert any(
        x["logger"] == "softserve.registry" and "serving version" in x["message"] for x in own
    )
    assert all(set(x) >= {"time", "level", "logger", "message"} for x in own)


# --- request ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("A.b_c:d-9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("ünïcode", False),
        ("semi;colon", False),
        ("", False),
    ],
)
def test_a_request_id_is_kept_only_when_it_is_safe(
    server: Server, client: httpx.Client, given: str, kept: bool
) -> None:
    headers = [(b"x-request-id", given.encode())]
    for answer in (
        client.post("/predict", json=PIXELS, headers=headers),  # the fast path
        client.get("/health/live", headers=headers),  # through FastAPI
        client.post("/predict", json={}, headers=headers),  # an error
    ):
        echoed = answer.headers["x-request-id"]
        assert (echoed == given) is kept
        assert 1 <= len(echoed) <= 128 and all(c.isalnum() or c in "._:-" for c in echoed)
    assert answer.json()["error"]["request_id"] == echoed


def test_made_ids_are_unique(client: httpx.Client) -> None:
    ids = {client.get("/health/live").headers["x-request-id"] for _ in range(20)}
    ids |= {client.post("/predict", json=PIXELS).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 40


def test_request_id_rules() -> None:
    assert request_id(b"ok.1") == "ok.1"
    made = request_id(None)
    assert made != request_id(None) and request_id(made.encode()) == made


# --- formats and settings --------------------------------------------------------------------


def test_text_format_and_an_access_log_off(tmp_path: Path) -> None:
    text_env = {"SOFTSERVE_LOG_FORMAT": "text"}
    with run_server(tmp_path / "text", text_env) as server, server.client() as client:
        client.post("/predict", json=PIXELS, headers={"X-Request-ID": "txt-1"})
        client.get("/models/nope", headers={"X-Request-ID": "txt-2"})
    text = server.log_text()
    assert " POST /predict 200 " in text and "id=txt-1 model=softmax" in text
    assert "GET /models/nope 404" in text and "id=txt-2 error=unknown_model" in text
    assert "INFO softserve.registry: model softmax: serving version" in text
    env = {"SOFTSERVE_LOG_FORMAT": "json", "SOFTSERVE_ACCESS_LOG": "off"}
    with run_server(tmp_path / "off", env) as server, server.client() as client:
        client.post("/predict", json=PIXELS)
        assert client.get("/health/live").headers["x-request-id"]  # ids stay
        assert log_lines(server)[("access", "written")] == 0
    assert lines(server) == [] and lines(server, "log")  # its own lines are still written


def test_every_request_is_written_dropped_or_sampled_out(tmp_path: Path) -> None:
    """Under a bounded load, with a queue of 2 lines and half the lines sampled out: lines
    written + counted drops + lines sampled out = requests, and some of each happened."""
    env = {
        "SOFTSERVE_LOG_FORMAT": "json",
        "SOFTSERVE_LOG_QUEUE_SIZE": "2",
        "SOFTSERVE_ACCESS_LOG_SAMPLE": "0.5",
    }
    clients, each = 8, 40
    with run_server(tmp_path, env) as server:
        before = log_lines(server, "before")  # counts what came earlier (the start's polls)

        def load(index: int) -> None:
            with server.client() as client:
                for i in range(each):
                    rid = f"load-{index}-{i}"
                    client.post("/predict", json=PIXELS, headers={"X-Request-ID": rid})

        threads = [threading.Thread(target=load, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = log_lines(server, "after")  # counts the load, and "before" itself; not itself
    written = [x for x in lines(server) if x["request_id"].startswith("load-")]
    dropped, sampled = (
        after["access", o] - before["access", o] for o in ("dropped", "sampled_out")
    )
    before_written = any(x["request_id"] == "before" for x in lines(server))
    assert len(written) + dropped + sampled == clients * each + (0 if before_written else 1)
    assert dropped > 0 and sampled > 0 and written
    assert len({x["request_id"] for x in written}) == len(written)  # each line once, whole


# --- the writer ------------------------------------------------------------------------------


def access(rid: str, path: str = "/predict") -> Request:
    return Request(1764625714.144, rid, "POST", path, 200, 1.5, "softmax", "v1", 1)


def read_all(fd: int) -> tuple[threading.Thread, list[bytes]]:
    """A thread reading the pipe ``fd`` to its end (so no write waits for room), and its chunks."""
    chunks: list[bytes] = []

    def read() -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    return reader, chunks


def test_the_writer_writes_whole_lines_in_pipe_sized_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read, write = os.pipe()
    reader, chunks = read_all(read)
    counted: list[tuple[str, str, int]] = []
    writer = Writer(write, "json", capacity=10_000, count=lambda *c: counted.append(c), interval=60)
    writes: list[bytes] = []
    real = os.write

    def spy(fd: int, data: Any) -> int:
        writes.append(bytes(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", spy)
    writer.start()
    for i in range(300):
        writer.put(access(f"r{i}", "/p" * 50))
    record = logging.LogRecord("softserve", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    writer.put(record)
    writer.stop()  # all 301 lines in one batch, ~60 KB: written in pieces
    monkeypatch.undo()
    os.close(write)
    reader.join(10)
    out = b"".join(chunks).splitlines()
    assert [orjson.loads(x)["request_id"] for x in out[:300]] == [f"r{i}" for i in range(300)]
    assert orjson.loads(out[300])["message"] == "hello x" and len(out) == 301
    assert all(len(w) <= PIPE_BUF and w.endswith(b"\n") for w in writes)  # whole lines
    assert len(writes) > 1 and b"".join(writes) == b"".join(chunks)  # every byte once
    assert counted == [("access", "written", 300), ("log", "written", 1)]


def test_before_the_thread_starts_a_line_is_written_at_once() -> None:
    read, write = os.pipe()
    writer = Writer(write, "json", capacity=1)
    assert writer.put(access("early")) and writer.put(access("also"))  # not dropped: written
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().splitlines()
    assert [orjson.loads(x)["request_id"] for x in out] == ["early", "also"]


@pytest.mark.parametrize("form", ["json", "text"])
def test_a_record_that_cannot_be_encoded_is_escaped_and_the_writer_goes_on(
    form: Literal["json", "text"],
) -> None:
    read, write = os.pipe()
    reader, chunks = read_all(read)
    writer = Writer(write, form, capacity=10)
    writer.start()
    bad = logging.LogRecord("softserve", logging.ERROR, __file__, 1, "bad %s", ("\udc80",), None)
    writer.put(prepare(bad))  # a lone surrogate: neither orjson nor UTF-8 takes it
    writer.put(access("after"))
    writer.stop()
    os.close(write)
    reader.join(10)
    out = b"".join(chunks).decode().splitlines()
    assert len(out) == 2 and "bad" in out[0] and "\\udc80" in out[0]
    assert "after" in out[1] and writer.running is False


def test_a_full_queue_drops_and_counts_and_never_blocks() -> None:
    counted: list[tuple[str, str, int]] = []
    sink = os.open(os.devnull, os.O_WRONLY)
    writer = Writer(sink, "json", capacity=3, count=lambda *c: counted.append(c), interval=3600)
    writer.start()  # its thread waits an hour before it writes: the queue fills
    results = [writer.put(access(str(i))) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert counted == [("access", "dropped", 1)] * 2
    writer.stop()  # writes what is queued
    assert ("access", "written", 3) in counted
    os.close(sink)


def test_access_lines_in_each_format() -> None:
    line = Request(1764625714.144, "id-1", "GET", "/models/x", 404, 0.25, error="unknown_model")
    assert orjson.loads(format_access(line, "json")) == {
        "time": "2025-12-01T21:48:34.144Z", "type": "access", "request_id": "id-1",
        "method": "GET", "path": "/models/x", "status": 404, "ms": 0.25, "error": "unknown_model",
    }  # fmt: skip
    assert format_access(line, "text") == (
        b"2025-12-01T21:48:34.144Z GET /models/x 404 0.25ms id=id-1 error=unknown_model\n"
    )


def test_a_line_longer_than_a_pipe_write_goes_alone_and_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read, write = os.pipe()
    reader, chunks = read_all(read)
    writes: list[bytes] = []
    real = os.write

    def spy(fd: int, data: Any) -> int:
        writes.append(bytes(data))
        return real(fd, data)

    paths = {"a": "/short", "b": "/" + "x" * 6000, "c": "/short", "d": "/short"}
    batch = [format_access(access(rid, path), "json") for rid, path in paths.items()]
    monkeypatch.setattr(os, "write", spy)
    write_lines(write, b"".join(batch))
    monkeypatch.undo()
    os.close(write)
    reader.join(10)
    out = b"".join(chunks)
    assert [orjson.loads(x)["request_id"] for x in out.splitlines()] == ["a", "b", "c", "d"]
    assert writes == [batch[0], batch[1], batch[2] + batch[3]]  # a; b alone; c and d together


def test_the_lines_of_two_workers_never_interleave(tmp_path: Path) -> None:
    """``python -m service --workers 2`` under a concurrent load, writing into one pipe (as under
    Docker or systemd): every line read is whole JSON, every request's line there once."""
    env = {"SOFTSERVE_LOG_FORMAT": "json"}
    with run_server(tmp_path, env, workers=2, entry="service", output="pipe") as server:
        from tests.support.server import wait_for

        wait_for(lambda: server.log_text().count("Application startup complete") >= 2)

        def load(index: int) -> None:
            for i in range(50):  # a new connection each time: the kernel spreads them
                with server.client() as client:
                    client.post("/predict", json=PIXELS, headers={"X-Request-ID": f"w-{index}-{i}"})

        threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    text = server.log_text()
    parsed = [orjson.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    ids = [x["request_id"] for x in parsed if x.get("type") == "access"]
    assert sorted(i for i in ids if i.startswith("w-")) == sorted(
        f"w-{t}-{i}" for t in range(6) for i in range(50)
    )


def test_the_format_is_text_on_a_terminal_and_json_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service import logs

    monkeypatch.setattr(os, "isatty", lambda fd: fd == logs.STDERR)
    assert logs.default_format(None) == "text"
    assert logs.default_format("json") == "json"
    monkeypatch.setattr(os, "isatty", lambda fd: False)
    assert logs.default_format(None) == "json"
    assert logs.default_format("text") == "text"
