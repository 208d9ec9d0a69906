"""Start-up: seconds from launching ``python -m service`` to its first 200 on /health/ready
(settings read, both shipped models loaded and checked), against the floor (`bench._floor`
under plain uvicorn) answering its first request, launched the same way in the same run.

    python -m bench.ready [--runs 7] [--markdown]

Each run uses a fresh copy of the shipped models (no kept versions yet, as on a first start).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.train import render
from tests.support.server import REPO, free_port, service_env, stop

TARGET = 1.0  # seconds: "ready within a second of start on the shipped models"


def time_to_ready(cmd: list[str], url: str, env: dict[str, str], timeout: float = 60.0) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        while (elapsed := time.perf_counter() - start) < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return elapsed
            time.sleep(0.005)
        raise RuntimeError(f"{url} not ready within {timeout} s")
    finally:
        stop(proc)


def one_run(kind: str, root: Path) -> float:
    port = free_port()
    env = service_env(root)
    if kind == "service":
        cmd = [sys.executable, "-m", "service", "--port", str(port)]
        return time_to_ready(cmd, f"http://127.0.0.1:{port}/health/ready", env)
    cmd = [sys.executable, "-m", "uvicorn", "bench._floor:app", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    return time_to_ready(cmd, f"http://127.0.0.1:{port}/", env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ready", description=__doc__)
    parser.add_argument(
        "--runs", type=int, default=7, help="runs of each, alternating (%(default)s)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"floor": [], "service": []}
    with tempfile.TemporaryDirectory(prefix="bench-ready-") as tmp:
        for run in range(args.runs):
            for kind in times:
                times[kind].append(one_run(kind, Path(tmp) / f"{kind}-{run}"))
                print(f"  run {run + 1}/{args.runs} {kind}: {times[kind][-1]:.3f} s", flush=True)
    rows = [
        [kind, f"{statistics.median(t):.3f}", f"{min(t):.3f}-{max(t):.3f}"]
        for kind, t in times.items()
    ]
    service, floor = (statistics.median(times[k]) for k in ("service", "floor"))
    print(render(["launch to first 200", "median s", "min-max s"], rows, args.markdown))
    met = "yes" if service <= TARGET else "NO"
    print(f"service / floor: {service / floor:.2f}; service ready in {service:.2f} s "
          f"(target <= {TARGET:.1f} s: {met})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
