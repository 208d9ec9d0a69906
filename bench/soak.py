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
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
from numpy.typing import NDArray
from PIL import Image

from bench.serve import ROOT, free_port, fresh_service_env, stop
from bench.train import load_average, render
from trainer.contract import N_FEATURES
from trainer.data import DEBIAN_DIR, load_dataset

LUA = Path(__file__).with_name("wrk_mix.lua")
TOKEN = "soak-token"
JSON, RAW, PROM = "application/json", "application/octet-stream", "text/plain"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    content_type: str | None = None
    accept: str | None = None
    body: bytes | None = None


def png(pixels: NDArray[np.uint8]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28)).save(out, format="PNG")
    return out.getvalue()


def multipart(files: Sequence[bytes], boundary: str = "soak-boundary") -> tuple[bytes, str]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data;boundary={boundary}"  # no space: the manifest splits on them


def mix(images: NDArray[np.uint8]) -> list[Request]:
    """Every input form /predict takes, and the reads a dashboard makes, each valid."""
    one = images[0]
    flat = orjson.dumps({"pixels": one.tolist()})
    square = orjson.dumps({"pixels": one.reshape(28, 28).tolist()})
    form, form_type = multipart([png(images[i]) for i in range(4)])
    return [
        Request("POST", "/predict", JSON, None, flat),
        Request("POST", "/predict", JSON, None, square),
        Request("POST", "/predict", JSON, None, orjson.dumps({"images": images[:32].tolist()})),
        Request("POST", "/predict?top_k=3", JSON, None, flat),
        Request("POST", "/models/binary/predict", JSON, None, flat),
        Request("POST", "/predict", RAW, None, images[:256].tobytes()),
        Request("POST", "/predict?model=binary", RAW, RAW, images[:256].tobytes()),
        Request("POST", "/predict", "image/png", None, png(one)),
        Request("POST", "/predict", form_type, None, form),
        Request("GET", "/metrics", None, JSON),
        Request("GET", "/metrics", None, PROM),
        Request("GET", "/models"),
        Request("GET", "/health/ready"),
    ]  # fmt: skip


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


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its uvicorn workers (not the training child)."""
    pids = [pid, *worker_pids(pid)]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def worker_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        # uvicorn's workers, not the training children nor the resource tracker
        if ppid == pid and b"spawn_main" in cmd and b"tracker_fd" in cmd:
            found.append(int(entry.name))
    return found if len(found) > 1 else []


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
            if body["status"] in ("succeeded", "failed", "cancelled"):
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
        env = fresh_service_env(root, SOFTSERVE_API_TOKEN=TOKEN, SOFTSERVE_LOG_LEVEL="warning")
        cmd = [sys.executable, "-m", "service", "--port", str(port), "--workers", str(args.workers)]
        log = (root / "server.log").open("wb")
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
