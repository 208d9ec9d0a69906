"""The service's /predict and /v2 inference against the floor, a bare ASGI app doing the same
work, under wrk.

    python -m bench.serve [--runs N] [--duration S] [--connections C] [--batch N] [--quick]
                          [--markdown]

Each run starts one server process (one worker, pinned to one core; wrk on another), waits until
it answers, warms it up for a second, then measures with wrk: one Fashion-MNIST image as JSON,
then a batch of raw uint8 images; for the tuned service also the same through the Open Inference
Protocol (one image as V2 JSON, the batch as a V2 binary request answered in binary). The
servers: the floor and the service tuned as benchmarks run
them (uvicorn, no access log, warnings only), and the README's command 1 as users run it
(`python -m service`: its access log on) beside the same with the access log off, for one JSON
image. They alternate within each run, so a busy spell slows every one. Prints tables of medians
and the ratios beside their targets; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import numpy as np
import orjson

from bench.train import load_average, render
from tests.support.server import run_server
from trainer.contract import N_FEATURES
from trainer.data import DEBIAN_DIR, load_dataset

LUA = Path(__file__).with_name("wrk_post.lua")
FLOOR, SERVICE = "floor", "service"
DEFAULT, QUIET = "python -m service", "python -m service, access log off"
NO_OOD = "service, OOD off"  # the tuned service without the out-of-distribution assessment
JSON, RAW = "application/json", "application/octet-stream"
V2_INFER = "/v2/models/softmax/infer"
MIN_THROUGHPUT, MAX_P99, MIN_BATCH_GAIN = 0.80, 2.0, 100.0  # the targets, as ratios
MIN_V2_JSON, MIN_V2_BINARY = 0.80, 0.90  # V2 against /predict: one JSON image; a binary batch
MIN_LOGGED, MAX_LOGGED_P99 = 0.93, 1.2  # the default command against its access log off
QUIET_ENV = {"SOFTSERVE_ACCESS_LOG": "off"}
MIN_OOD_SINGLE, MIN_OOD_BATCH = 0.90, 0.80  # the assessment's cost caps, as ratios on / off


@dataclass(frozen=True)
class Kind:
    """A request measured: where it goes, which body (`write_bodies`) and its headers."""

    name: str
    path: str
    body: str
    headers: tuple[tuple[str, str], ...]
    batched: bool  # the body holds the whole batch, not one image


# /predict's: one image as JSON; a batch of raw uint8 answered in JSON, or in raw float32. V2's:
# one image as JSON; the batch as UINT8 binary data, its output asked for as binary data too.
# Each V2 kind is measured right after the /predict kind it is compared with, in the same
# process: a process that has just answered big batches answers small requests slower.
KINDS = (
    Kind("json", "/predict", "one", (("Content-Type", JSON),), False),
    Kind("v2-json", V2_INFER, "v2-one", (("Content-Type", JSON),), False),
    Kind("raw", "/predict", "many", (("Content-Type", RAW),), True),
    Kind("raw-out", "/predict", "many", (("Content-Type", RAW), ("Accept", RAW)), True),
    Kind("v2-binary", V2_INFER, "v2-many", (("Content-Type", RAW),), True),
)
PREDICT_KINDS = ("json", "raw", "raw-out")


@dataclass(frozen=True)
class Run:
    """One wrk measurement; latencies in milliseconds."""

    rps: float
    p50: float
    p99: float
    errors: dict[str, int]  # kind -> count: connect, read, write, timeout, status (>= 400)

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())


def pinning() -> tuple[list[str], list[str]]:
    """Command prefixes putting the server and wrk on different cores, when there are two."""
    cores = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(cores) < 2:
        return [], []
    return ["taskset", "-c", str(cores[0])], ["taskset", "-c", str(cores[1])]


@dataclass(frozen=True)
class App:
    """A server measured: how it starts, and the kinds of request it is sent."""

    name: str
    ready: str  # the path polled until it answers
    kinds: tuple[str, ...]
    asgi: str | None = None  # tuned: uvicorn on this app, one worker, no access log, warnings only
    env: dict[str, str] = field(default_factory=dict)  # its settings; no asgi: python -m service


@contextlib.contextmanager
def server(app: App, root: Path, pin: list[str]) -> Iterator[str]:
    """Run ``app`` (one worker) until the block ends; yields its base URL. Its models are a
    fresh copy of the shipped ones in ``root``, its output a file there."""
    if app.asgi is not None:
        options = ("--no-access-log", "--log-level", "warning")
        started = run_server(root, app.env, app=app.asgi, uvicorn_options=options, prefix=pin,
                             live_path=app.ready, watch_interval=None)  # fmt: skip
    else:
        started = run_server(root, app.env, entry="service", prefix=pin, live_path=app.ready,
                             watch_interval=None)  # fmt: skip
    with started as running:
        yield running.url


def wrk(url: str, body: Path, headers: dict[str, str], seconds: float, connections: int,
        pin: list[str]) -> Run:  # fmt: skip
    """``url`` (with its path) under wrk, POSTing ``body`` with ``headers``."""
    cmd = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "-s", str(LUA), url, "--", str(body),
           *(f"{name}: {value}" for name, value in headers.items())]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    errors = {k: r[k] for k in ("connect", "read", "write", "timeout", "status") if r[k]}
    return Run(r["requests"] / r["duration_us"] * 1e6, r["p50_us"] / 1e3, r["p99_us"] / 1e3,
               errors)  # fmt: skip


def probe(url: str, body: Path, headers: dict[str, str]) -> str | None:
    """None if one request answers 200, else its status and the start of its body."""
    reply = httpx.post(url, content=body.read_bytes(), headers=headers, timeout=30)
    return None if reply.status_code == 200 else f"{reply.status_code} {reply.text[:500]}"


def write_bodies(folder: Path, batch: int) -> tuple[dict[str, tuple[Path, dict[str, str]]], str]:
    """Each body `KINDS` name, with the headers it needs besides theirs: one image as JSON and
    ``batch`` images as raw bytes, for /predict and for V2; test images when the data is here."""
    if DEBIAN_DIR.is_dir():
        images = load_dataset(DEBIAN_DIR).test_images
        images = np.resize(images, (batch, N_FEATURES))  # repeats the set if batch > 10000
        source = f"Fashion-MNIST test images from {DEBIAN_DIR}"
    else:
        images = np.random.default_rng(0).integers(0, 256, (batch, N_FEATURES), dtype=np.uint8)
        source = f"random pixels (no Fashion-MNIST at {DEBIAN_DIR})"
    raw = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
    v2_one = {"inputs": [{"name": "pixels", "shape": [1, N_FEATURES], "datatype": "UINT8",
                          "data": images[0].tolist()}]}  # fmt: skip
    v2_header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [batch, N_FEATURES],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )  # fmt: skip: what tritonclient sends by default
    contents = {
        "one": (orjson.dumps({"pixels": images[0].tolist()}), {}),
        "many": (raw, {}),
        "v2-one": (orjson.dumps(v2_one), {}),
        "v2-many": (v2_header + raw, {"Inference-Header-Content-Length": str(len(v2_header))}),
    }
    bodies = {}
    for name, (content, headers) in contents.items():
        (folder / name).write_bytes(content)
        bodies[name] = (folder / name, headers)
    return bodies, source


def summary(name: str, runs: list[Run], per_request: int) -> list[str]:
    rps = [r.rps for r in runs]
    errors = sum(r.n_errors for r in runs)
    return [name, str(len(runs)), f"{statistics.median(rps):.0f}",
            f"{min(rps):.0f}-{max(rps):.0f}", f"{statistics.median(rps) * per_request:.0f}",
            f"{statistics.median(r.p50 for r in runs):.2f}",
            f"{statistics.median(r.p99 for r in runs):.2f}",
            f"{errors} in {sum(r.n_errors > 0 for r in runs)} runs" if errors else "0"]  # fmt: skip


HEADER = ["app", "runs", "req/s", "min-max req/s", "images/s", "p50 ms", "p99 ms", "errors"]


def ratio_rows(res: dict[tuple[str, str], list[Run]], batch: int) -> list[list[str]]:
    """The ratios of the apps that were measured, beside their targets."""

    def med(app: str, kind: str, field: str) -> float:
        return statistics.median(float(getattr(r, field)) for r in res[app, kind])

    checks: list[tuple[str, float, str, bool | None]] = []
    if (FLOOR, "json") in res:
        throughput = med(SERVICE, "json", "rps") / med(FLOOR, "json", "rps")
        p99 = med(SERVICE, "json", "p99") / med(FLOOR, "json", "p99")
        gain = med(SERVICE, "raw", "rps") * batch / med(SERVICE, "json", "rps")
        raw_gain = med(SERVICE, "raw-out", "rps") * batch / med(SERVICE, "json", "rps")
        floor_gain = med(FLOOR, "raw", "rps") * batch / med(FLOOR, "json", "rps")
        checks += [
            ("single JSON req/s, service / floor", throughput, f">= {MIN_THROUGHPUT:.2f}",
             throughput >= MIN_THROUGHPUT),
            ("single JSON p99, service / floor", p99, f"<= {MAX_P99:.2f}", p99 <= MAX_P99),
            ("service images/s, batched (JSON out) / single", gain, f">= {MIN_BATCH_GAIN:.0f}",
             gain >= MIN_BATCH_GAIN),
            ("service images/s, batched (raw out) / single", raw_gain,
             f">= {MIN_BATCH_GAIN:.0f}", raw_gain >= MIN_BATCH_GAIN),
            ("floor images/s, batched (JSON out) / single", floor_gain, "-", None),
            ("batched (JSON out) images/s, service / floor",
             med(SERVICE, "raw", "rps") / med(FLOOR, "raw", "rps"), "-", None),
            ("batched (raw out) images/s, service / floor",
             med(SERVICE, "raw-out", "rps") / med(FLOOR, "raw-out", "rps"), "-", None),
        ]  # fmt: skip
    if (SERVICE, "v2-json") in res:
        v2_json = med(SERVICE, "v2-json", "rps") / med(SERVICE, "json", "rps")
        v2_binary = med(SERVICE, "v2-binary", "rps") / med(SERVICE, "raw-out", "rps")
        checks += [
            ("single JSON req/s, V2 infer / /predict", v2_json, f">= {MIN_V2_JSON:.2f}",
             v2_json >= MIN_V2_JSON),
            (f"{batch} images/s, V2 binary / /predict raw (raw out)", v2_binary,
             f">= {MIN_V2_BINARY:.2f}", v2_binary >= MIN_V2_BINARY),
        ]  # fmt: skip
    if (NO_OOD, "json") in res:
        single = med(SERVICE, "json", "rps") / med(NO_OOD, "json", "rps")
        batched = med(SERVICE, "raw-out", "rps") / med(NO_OOD, "raw-out", "rps")
        checks += [
            ("single JSON req/s, OOD assessment on / off", single, f">= {MIN_OOD_SINGLE:.2f}",
             single >= MIN_OOD_SINGLE),
            (f"{batch} images/s raw (raw out), OOD assessment on / off", batched,
             f">= {MIN_OOD_BATCH:.2f}", batched >= MIN_OOD_BATCH),
        ]  # fmt: skip
    if (DEFAULT, "json") in res:
        logged = med(DEFAULT, "json", "rps") / med(QUIET, "json", "rps")
        logged_p99 = med(DEFAULT, "json", "p99") / med(QUIET, "json", "p99")
        checks += [
            ("single JSON req/s, python -m service: access log on / off", logged,
             f">= {MIN_LOGGED:.2f}", logged >= MIN_LOGGED),
            ("single JSON p99, python -m service: access log on / off", logged_p99,
             f"<= {MAX_LOGGED_P99:.2f}", logged_p99 <= MAX_LOGGED_P99),
        ]  # fmt: skip
    if (DEFAULT, "json") in res and (SERVICE, "json") in res:
        versus = med(DEFAULT, "json", "rps") / med(SERVICE, "json", "rps")
        checks.append(("single JSON req/s, python -m service / tuned service", versus, "-", None))
    return [[name, f"{value:.2f}", target, {True: "yes", False: "NO", None: "-"}[met]]
            for name, value, target, met in checks]  # fmt: skip


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that `kill` stops the servers and wrk as Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve", description="The service's /predict against the floor."
    )
    add = parser.add_argument
    add("--runs", type=int, help="runs of each app, alternating (5; --quick: 3)")
    add("--duration", type=float, help="seconds of each wrk measurement (5; --quick: 2)")
    add("--connections", type=int, default=16, help="wrk connections (%(default)s)")
    add("--batch", type=int, default=1024, help="images per batched request (%(default)s)")
    add("--quick", action="store_true", help="3 runs of 2 s: a smoke run")
    add("--service-app", default="service.app:app", help="the app measured (%(default)s)")
    add("--markdown", action="store_true", help="print the tables as Markdown")
    add(
        "--only",
        choices=("tuned", "default", "ood"),
        help="measure only the floor and the tuned service, only python -m service with its "
        "access log on and off, or only the tuned service with its OOD assessment on and off "
        "(default: all)",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    seconds = args.duration or (2.0 if args.quick else 5.0)
    server_pin, wrk_pin = pinning()
    signal.signal(signal.SIGTERM, interrupt)
    started = time.perf_counter()
    cores = f"server on core {server_pin[2]}, wrk on {wrk_pin[2]}" if server_pin else "unpinned"
    print(f"machine: Python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {load_average()}; {cores}")  # fmt: skip

    everything = tuple(kind.name for kind in KINDS)
    apps = [
        App(FLOOR, "/", PREDICT_KINDS, asgi="bench._floor:app"),  # it speaks no V2
        App(SERVICE, "/health/live", everything, asgi=args.service_app, env=QUIET_ENV),
        App(DEFAULT, "/health/live", ("json",)),  # the README's command 1, its defaults
        App(QUIET, "/health/live", ("json",), env=QUIET_ENV),
        App(NO_OOD, "/health/live", ("json", "raw-out"), asgi=args.service_app,
            env=QUIET_ENV | {"SOFTSERVE_OOD": "off"}),
    ]  # fmt: skip
    if args.only == "tuned":
        apps = apps[:2]
    elif args.only == "default":
        apps = apps[2:4]
    elif args.only == "ood":
        apps = [apps[1], apps[4]]
    res: dict[tuple[str, str], list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        bodies, source = write_bodies(Path(tmp), args.batch)
        print(f"requests: {source}; {bodies['one'][0].stat().st_size} JSON bytes, "
              f"{args.batch} x 784 raw bytes")  # fmt: skip
        problems: dict[tuple[str, str], str] = {}
        try:
            for i in range(runs):
                for index, app in enumerate(apps):
                    name = app.name
                    root = Path(tmp) / f"{index}-{i}"
                    root.mkdir()
                    with server(app, root, server_pin) as url:
                        for measured in KINDS:
                            kind = measured.name
                            if kind not in app.kinds:
                                continue
                            body, extra = bodies[measured.body]
                            headers = dict(measured.headers) | extra
                            target = url + measured.path
                            problem = probe(target, body, headers)
                            if problem and (name, kind) not in problems:
                                problems[name, kind] = problem
                                print(f"  {name} {kind}: {problem}", file=sys.stderr)
                            wrk(target, body, headers, 1.0, args.connections,
                                wrk_pin)  # warm-up  # fmt: skip
                            run = wrk(target, body, headers, seconds, args.connections,
                                      wrk_pin)  # fmt: skip
                            res.setdefault((name, kind), []).append(run)
                            flag = f"  ERRORS {run.errors}" if run.errors else ""
                            print(f"  run {i + 1}/{runs} {name} {kind}: {run.rps:.0f} req/s, "
                                  f"p50 {run.p50:.2f} ms, p99 {run.p99:.2f} ms{flag}",
                                  file=sys.stderr, flush=True)  # fmt: skip
        except KeyboardInterrupt:
            print("interrupted: every server and wrk stopped", file=sys.stderr)
            return 130

    print(f"\nOne image as JSON, POST /predict ({args.connections} connections, {seconds:g} s "
          f"per run, medians over {runs} runs):\n")  # fmt: skip
    print(render(HEADER, [summary(a.name, res[a.name, "json"], 1) for a in apps], args.markdown))
    batched = [a.name for a in apps if "raw" in a.kinds]
    if batched:
        print(f"\n{args.batch} images as raw uint8 (application/octet-stream), POST /predict, "
              "answered in JSON:\n")  # fmt: skip
        print(render(HEADER, [summary(n, res[n, "raw"], args.batch) for n in batched],
                     args.markdown))  # fmt: skip
    raw_out = [a.name for a in apps if "raw-out" in a.kinds]
    if raw_out:
        print(f"\nThe same {args.batch} images, answered as raw float32 probabilities "
              "(Accept: application/octet-stream):\n")  # fmt: skip
        print(render(HEADER, [summary(n, res[n, "raw-out"], args.batch) for n in raw_out],
                     args.markdown))  # fmt: skip
    if (SERVICE, "v2-json") in res:
        print(f"\nThe tuned service through the Open Inference Protocol, POST {V2_INFER}: one "
              f"image as V2 JSON; {args.batch} images as V2 binary data (UINT8), answered as "
              "binary FP32:\n")  # fmt: skip
        rows = [summary("v2 json, 1 image", res[SERVICE, "v2-json"], 1),
                summary(f"v2 binary, {args.batch} images", res[SERVICE, "v2-binary"],
                        args.batch)]  # fmt: skip
        print(render(HEADER, rows, args.markdown))
    print("\nRatios of medians, and the targets:\n")
    ratios = ratio_rows(res, args.batch)
    print(render(["ratio", "measured", "target", "met"], ratios, args.markdown))
    for (name, kind), problem in problems.items():
        print(f"\n{name} {kind}: a probe request got {problem}")
    if any(r.errors for rs in res.values() for r in rs):
        print("\nwrk saw errors: see the errors column and the per-run lines above.")
    print(f"\nafter: load average {load_average()}; benchmark took "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
