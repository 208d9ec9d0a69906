"""A bounded soak: every kind of request at saturation, metrics scrapes and a training job at once.

    python -m bench.soak [--seconds 60] [--window 10] [--connections 16] [--workers 1] [--markdown]

One ``python -m service`` on a copy of the shipped models; wrk cycles through the request mix
(`mix`: JSON flat, 28x28 and batched, raw uint8 answered in JSON and in float32, PNG, multipart,
the binary model, top_k, /metrics as JSON and as Prometheus text, /models, /health/ready) for a
warm-up (not measured), then in consecutive windows, while a training job on Fashion-MNIST runs
from the first window on. Prints a row per window (req/s, p50, p99, errors, the server's resident
memory) and a summary: throughput and p99 of the last window against the first, memory at the end
against after the warm-up (the target: under 10% growth). Never asserts; exits
1 if any request failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.train import load_average, render
from service.jobs.record import TERMINAL
from tests.support.procs import rss_mib
from tests.support.requests import Request, mix
from tests.support.server import REPO, free_port, service_env, stop
from trainer.contract import N_FEATURES
from trainer.data import DEBIAN_DIR, load_dataset

LUA = Path(__file__).with_name("wrk_mix.lua")
TOKEN = "soak-token"
JSON, RAW, PROM = "application/json", "application/octet-stream", "text/plain"


def write_manifest(requests: list[Request], folder: Path) -> Path:
    lines = []
    for i, r in enumerate(requests):
        body = "-"
        if r.body is not None:
            (folder / f"body{i}").write_bytes(r.body)
            body = str(folder / f"body{i}")
        fields = [r.method, r.path, r.content_type or "-", r.accept or "-", body]
        assert all(" " not in f for f in fields), fields
        lines.append(" ".join(fields))
    manifest = folder / "manifest.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_wrk(url: str, manifest: Path, seconds: float, connections: int) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "-s", str(LUA), url, "--", str(manifest)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r: dict[str, float] = orjson.loads(line.removeprefix("BENCH_JSON "))
    return r


def watch_job(url: str, epochs: int, outcome: dict[str, object]) -> None:
    """Submit one training job and follow it to its end."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post("/train", json={"epochs": epochs, "force": True}, headers=headers)
        if reply.status_code != 202:
            outcome["status"] = f"not accepted: {reply.status_code} {reply.text[:300]}"
            return
        job = reply.json()["job_id"]
        started = time.monotonic()
        while True:
            body = client.get(f"/train/{job}").json()
            if body["status"] in TERMINAL:
                outcome |= {
                    "status": body["status"],
                    "error": body["error"],
                    "seconds": time.monotonic() - started,
                    "version": body["version"],
                }
                return
            time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    add = parser.add_argument
    add("--seconds", type=float, default=60.0, help="length of the soak (%(default)s)")
    add("--window", type=float, default=10.0, help="seconds per measured window (%(default)s)")
    add("--connections", type=int, default=16, help="wrk connections (%(default)s)")
    add("--workers", type=int, default=1, help="server worker processes (%(default)s)")
    add("--epochs", type=int, default=20, help="epochs of the training job (%(default)s)")
    add("--warm-up", type=float, default=5.0, help="seconds of load before measuring (%(default)s)")
    add("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench.soak needs wrk: apt-get install wrk")
    if not DEBIAN_DIR.is_dir():
        sys.exit("bench.soak trains on Fashion-MNIST: apt-get install dataset-fashion-mnist")
    images = np.ascontiguousarray(load_dataset(DEBIAN_DIR).test_images[:256], dtype=np.uint8)
    assert images.shape == (256, N_FEATURES)
    requests = mix(images)
    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()}; "
          f"{len(requests)} kinds of request, {args.connections} connections, "
          f"{args.workers} worker(s)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        root = Path(tmp)
        manifest = write_manifest(requests, root)
        port = free_port()
        env = service_env(root, SOFTSERVE_API_TOKEN=TOKEN, SOFTSERVE_LOG_LEVEL="warning")
        cmd = [sys.executable, "-m", "service", "--port", str(port), "--workers", str(args.workers)]
        log = (root / "server.log").open("wb")
        server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            return soak(args, server, url, manifest, root / "server.log")
        finally:
            stop(server, grace=30)
            log.close()


def soak(args: argparse.Namespace, server: subprocess.Popen[bytes], url: str, manifest: Path,
         log: Path) -> int:  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            sys.exit(f"server not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    for bad in mix_check(url, manifest):
        sys.exit(f"a request of the mix is not answered 2xx: {bad}")
    rss_cold = rss_mib(server.pid)
    warm_up = run_wrk(url, manifest, args.warm_up, args.connections)  # lazy imports, pools
    if any(warm_up[k] for k in ("connect", "read", "write", "status", "timeout")):
        sys.exit(f"errors while warming up: {warm_up}")
    rss_start = rss_mib(server.pid)
    job: dict[str, object] = {}
    trainer = threading.Thread(target=watch_job, args=(url, args.epochs, job))
    trainer.start()
    rows: list[list[str]] = []
    windows: list[tuple[float, float, int, float]] = []
    n = max(1, round(args.seconds / args.window))
    for i in range(n):
        r = run_wrk(url, manifest, args.window, args.connections)
        errors = int(sum(r[k] for k in ("connect", "read", "write", "status", "timeout")))
        rss = rss_mib(server.pid)
        windows.append((r["requests"] / r["duration_us"] * 1e6, r["p99_us"] / 1e3, errors, rss))
        rows.append([f"{i + 1}", f"{windows[-1][0]:.0f}", f"{r['p50_us'] / 1e3:.2f}",
                     f"{r['p99_us'] / 1e3:.2f}", f"{r['max_us'] / 1e3:.1f}", str(errors),
                     f"{rss:.1f}", str(job.get("status", "running"))])  # fmt: skip
        print(f"  window {i + 1}/{n}: {rows[-1][1]} req/s, p99 {rows[-1][3]} ms, "
              f"{errors} errors, {rss:.1f} MiB", flush=True)  # fmt: skip
    trainer.join(600)
    header = ["window", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "RSS MiB", "job"]
    print()
    print(render(header, rows, args.markdown))
    first, last = windows[0], windows[-1]
    job_seconds = float(str(job.get("seconds", 0.0)))
    total_errors = sum(w[2] for w in windows)
    summary = [
        ["requests failed (all windows)", str(total_errors), "0"],
        ["throughput, last / first window", f"{last[0] / first[0]:.2f}", "-"],
        ["p99, last / first window", f"{last[1] / first[1]:.2f}", "-"],
        ["RSS, end / after the warm-up", f"{last[3] / rss_start:.3f}", "< 1.10"],
        ["RSS, end / after the first window", f"{last[3] / first[3]:.3f}", "-"],
        ["RSS MiB: cold, warmed up, end", f"{rss_cold:.1f}, {rss_start:.1f}, {last[3]:.1f}", "-"],
        ["median p99 ms over windows", f"{statistics.median(w[1] for w in windows):.2f}", "-"],
        ["training job", f"{job.get('status')} in {job_seconds:.1f} s", "succeeded"],
    ]  # fmt: skip
    print()
    print(render(["measure", "value", "target"], summary, args.markdown))
    if "Traceback" in log.read_text(errors="replace"):
        print("the server log has a traceback:\n" + log.read_text()[-3000:])
        return 1
    return 0 if total_errors == 0 and job.get("status") == "succeeded" else 1


def mix_check(url: str, manifest: Path) -> list[str]:
    """Each request of the manifest once: the ones not answered 2xx."""
    bad = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for line in manifest.read_text().splitlines():
            method, path, ctype, accept, body = line.split(" ")
            headers = {k: v for k, v in (("content-type", ctype), ("accept", accept)) if v != "-"}
            content = Path(body).read_bytes() if body != "-" else None
            reply = client.request(method, path, headers=headers, content=content)
            if not 200 <= reply.status_code < 300:
                bad.append(f"{method} {path}: {reply.status_code} {reply.text[:200]}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
