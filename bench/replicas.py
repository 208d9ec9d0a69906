"""Replicas on one PostgreSQL: how soon a promotion reaches every replica, and what the database
and the balancer cost a prediction.

    python -m bench.replicas [--runs N] [--seconds S] [--promotions N] [--trainings N]
                             [--connections C] [--batch N] [--markdown]

1. Promotions. Three `python -m service` replicas share a real PostgreSQL
   (`tests.support.cluster`), their periodic re-read set to an hour, so that only LISTEN/NOTIFY
   brings a change. First a few forced one-epoch trainings on a small synthetic set make the
   versions: each is timed from the job's end (its ``updated_at``, to the microsecond) to the
   last replica serving its version; the replicas are asked once the job is seen ended (asked
   every 10 ms), so these are upper bounds. Then each promotion activates another kept version
   through the next replica in turn, and one thread per replica asks ``GET /models/softmax``
   without pause until that replica serves it: the latency runs from the activate's 200 to the
   last replica's first answer with the new version.
2. No database on the prediction path: one replica on PostgreSQL against the same command on
   the folder backend (SQLite and the model folder), under wrk as `bench.serve` measures:
   `python -m service` with the access log off, pinned to one core, wrk on the other; one image
   as JSON, then a raw batch answered raw. Both start afresh for each run and are measured one
   right after the other, in each of the six orders in turn. Beside req/s, the server's CPU time
   per request (from /proc over the measured run): a neighbour sharing the core does not move
   it, though a slower spell of the machine does. And the database's own count of transactions
   per 1000 predictions while the PostgreSQL replica was measured: the proof that none of them
   asks the database, which timings on this machine are too noisy to give.
3. The balancer's cost: that PostgreSQL replica through haproxy (`tests.support.haproxy`, the
   replica its only backend; haproxy pinned to wrk's core, so the replica keeps its core to
   itself as when asked directly) against the same process asked directly. This is what
   haproxy adds to a request, not whether replicas scale: on two cores they could not, as three
   replicas, wrk and haproxy would share them.

Prints tables of medians and the ratios beside their targets; never asserts.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path

import httpx
import psycopg

from bench import serve
from bench.serve import Kind, Run
from bench.train import load_average, render
from service.jobs.record import TERMINAL
from tests.support.cluster import AUTH, running_cluster
from tests.support.haproxy import running_haproxy
from tests.support.postgres import Postgres, running_postgres
from tests.support.server import SHIPPED, run_server
from tests.synthetic import write_dataset
from trainer.timestamps import parse_utc

__all__ = ["main"]

MODEL = "softmax"
MAX_MEDIAN, MAX_WORST = 0.2, 2.0  # seconds until every replica serves a promotion: the targets
MIN_POSTGRES = 0.95  # one replica's single-image req/s on PostgreSQL / on the folder backend
DEADLINE = 30.0  # seconds a promotion is waited for; one not seen everywhere by then is flagged
REPLICAS = 3
FOLDER, POSTGRES, BALANCED = "folder backend", "PostgreSQL, direct", "PostgreSQL, via haproxy"
MEASURED = ("json", "raw-out")  # bench.serve's kinds: one image as JSON; a raw batch, raw out


def processor() -> str:
    """lscpu's "Model name", or what the platform says without lscpu."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    names = [x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Model name:")]
    return next(iter(names), platform.processor() or "unknown processor")


# --- 1. promotions ---------------------------------------------------------------------------


def first_seen(client: httpx.Client, version: str, deadline: float) -> float:
    """perf_counter() at ``client``'s replica's first answer serving ``version``, asked without
    pause; inf if it does not by ``deadline`` (perf_counter)."""
    while time.perf_counter() < deadline:
        if client.get(f"/models/{MODEL}").json()["version"] == version:
            return time.perf_counter()
    return math.inf


def everywhere(pool: ThreadPoolExecutor, clients: list[httpx.Client], version: str) -> float:
    """perf_counter() when the last replica first served ``version`` (inf: not in time)."""
    deadline = time.perf_counter() + DEADLINE
    return max(pool.map(lambda client: first_seen(client, version, deadline), clients))


def train(client: httpx.Client, pool: ThreadPoolExecutor, clients: list[httpx.Client]) -> float:
    """Seconds from a forced one-epoch job's end to the last replica serving its version."""
    reply = client.post("/train", json={"epochs": 1, "force": True}, headers=AUTH)
    if reply.status_code != 202:
        raise RuntimeError(f"POST /train: {reply.status_code} {reply.text[:500]}")
    job_id, deadline = reply.json()["job_id"], time.monotonic() + 120
    while (job := client.get(f"/train/{job_id}").json())["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job['status']} after 120 s")
        time.sleep(0.01)
    if job["status"] != "succeeded" or not job["promoted"]:
        raise RuntimeError(f"job {job_id} did not promote: {job}")
    seen = everywhere(pool, clients, job["version"])
    seen_wall = time.time() - (time.perf_counter() - seen)  # the clocks the job's end is on
    return seen_wall - parse_utc(job["updated_at"]).timestamp()


def activate(client: httpx.Client, version: str) -> tuple[float, float]:
    """perf_counter() when the activate was sent, and when its 200 came back."""
    sent = time.perf_counter()
    reply = client.post(f"/models/{MODEL}/activate", json={"version": version}, headers=AUTH)
    if reply.status_code != 200:
        raise RuntimeError(f"activate {version}: {reply.status_code} {reply.text[:500]}")
    return sent, time.perf_counter()


def promotions(
    postgres: Postgres, root: Path, count: int, trainings: int
) -> dict[str, list[float]]:
    """Seconds until every replica served each promotion: by training, by activation from its
    200 ("activated") and from sending it ("requested")."""
    env = {"SOFTSERVE_DATA_DIR": str(write_dataset(root / "synthetic"))}
    out: dict[str, list[float]] = {"trained": [], "activated": [], "requested": []}
    with (
        running_cluster(postgres, root / "cluster", replicas=REPLICAS, env=env,
                        watch_interval=3600, balancer=False) as cluster,
        ThreadPoolExecutor(REPLICAS) as pool,
        ExitStack() as stack,
    ):  # fmt: skip
        clients = [stack.enter_context(httpx.Client(base_url=s.url, timeout=30))
                   for s in cluster.servers]  # fmt: skip
        for i in range(trainings):
            out["trained"].append(train(clients[i % REPLICAS], pool, clients))
            print(f"  training {i + 1}/{trainings}: {out['trained'][-1]:.3f} s", file=sys.stderr)
        kept = [
            v["version"] for v in clients[0].get(f"/models/{MODEL}/versions").json()["versions"]
        ]
        if len(kept) < 2:
            raise RuntimeError(f"need two kept versions to alternate among, have {kept}")
        for i in range(count):
            via = clients[i % REPLICAS]
            current = via.get(f"/models/{MODEL}").json()["version"]
            others = [v for v in kept if v != current]
            target = others[i % len(others)]
            sent, answered = activate(via, target)
            seen = everywhere(pool, clients, target)
            out["activated"].append(seen - answered)
            out["requested"].append(seen - sent)
            print(f"  activation {i + 1}/{count}: {seen - answered:.3f} s", file=sys.stderr)
    return out


def seconds(value: float) -> str:
    return f"not within {DEADLINE:g}" if math.isinf(value) else f"{value:.3f}"


def met(value: float, most: float) -> str:
    return "yes" if value <= most else "NO"


def promotion_tables(found: dict[str, list[float]], markdown: bool) -> str:
    rows = [[name, str(len(values)), seconds(statistics.median(values)), seconds(max(values)),
             seconds(min(values))]
            for name, values in (
                ("by activation, from its 200", found["activated"]),
                ("by activation, from sending it", found["requested"]),
                ("by training (1 epoch, forced), from the job's end", found["trained"]),
            ) if values]  # fmt: skip
    median, worst = statistics.median(found["activated"]), max(found["activated"])
    targets = [
        ["by activation, median", seconds(median), f"<= {MAX_MEDIAN:g}", met(median, MAX_MEDIAN)],
        ["by activation, max", seconds(worst), f"<= {MAX_WORST:g}", met(worst, MAX_WORST)],
    ]
    return "\n\n".join([
        render(["promotion", "count", "median s", "max s", "min s"], rows, markdown),
        render(["until every replica serves it", "measured s", "target s", "met"], targets,
               markdown),
    ])  # fmt: skip


# --- 2 and 3. throughput ---------------------------------------------------------------------


def pin_threads(pid: int, pin: list[str]) -> None:
    """Every thread of ``pid`` onto the core of the ``taskset -c CORE`` prefix ``pin``."""
    if pin:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {int(pin[2])})


@dataclass(frozen=True)
class Measured:
    """One wrk run, and what the server's process spent on it."""

    run: Run
    cpu_us: float  # the server's CPU time per request (user and system, every thread)
    db_per_1000: float | None = None  # database transactions per 1000 requests (PostgreSQL)

    @property
    def per_cpu(self) -> float:
        """Requests per second of the server's CPU: a busy neighbour slows the clock, not this."""
        return 1e6 / self.cpu_us


def transactions(postgres: Postgres) -> int:
    """Transactions the database has ended so far, as its statistics count them (flushed within
    about a second: a query per prediction would show as thousands, the replica's once-a-second
    re-read of the active versions as a few)."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row is not None else 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def measure(url: str, pid: int, kind: Kind, bodies: dict[str, tuple[Path, dict[str, str]]],
            args: argparse.Namespace, pin: list[str]) -> Measured:  # fmt: skip
    """``kind`` sent to ``url`` under wrk: one request checked, 1 s of warm-up, then measured,
    with the CPU time of the server (``pid``) over the measured run."""
    body, extra = bodies[kind.body]
    headers, target = dict(kind.headers) | extra, url + kind.path
    problem = serve.probe(target, body, headers)
    if problem is not None:
        raise RuntimeError(f"POST {target}: {problem}")
    serve.wrk(target, body, headers, 1.0, args.connections, pin)
    before = cpu_seconds(pid)
    run = serve.wrk(target, body, headers, args.seconds, args.connections, pin)
    return Measured(run, (cpu_seconds(pid) - before) * 1e6 / (run.rps * args.seconds))


def throughput(
    postgres: Postgres, root: Path, args: argparse.Namespace
) -> dict[tuple[str, str], list[Measured]]:
    """The runs of each (server, kind): the folder backend, PostgreSQL direct and via haproxy."""
    server_pin, wrk_pin = serve.pinning()
    bodies, source = serve.write_bodies(root, args.batch)
    print(f"  requests: {source}", file=sys.stderr)
    kinds = [kind for kind in serve.KINDS if kind.name in MEASURED]
    database = {"SOFTSERVE_DATABASE_URL": postgres.url, "SOFTSERVE_SEED_DIR": str(SHIPPED)}
    res: dict[tuple[str, str], list[Measured]] = {}
    for i in range(args.runs):
        with ExitStack() as stack:
            # two fresh `python -m service` on the server's core, as bench.serve starts them (the
            # pid is python's: taskset execs it); one waits idle while the other is measured
            folder, replica = (
                stack.enter_context(run_server(root / f"{name}-{i}", serve.QUIET_ENV | env,
                                               entry="service", prefix=server_pin,
                                               watch_interval=None))
                for name, env in (("folder", {}), ("postgres", database))
            )  # fmt: skip
            port = int(replica.url.rsplit(":", 1)[1])
            balancer = stack.enter_context(running_haproxy(root / f"haproxy-{i}", [("r0", port)]))
            pin_threads(balancer.process.pid, wrk_pin)
            targets = [(FOLDER, folder.url, folder.process.pid),
                       (POSTGRES, replica.url, replica.process.pid),
                       (BALANCED, balancer.url, replica.process.pid)]  # fmt: skip
            # the three one after the other, so that a slow spell of the machine falls on all;
            # every JSON run before any batch, as bench.serve does; the order is each of the six
            # in turn, so that no server keeps the same place (the first, the middle) every run
            order = list(itertools.permutations(targets))[i % 6]
            for kind in kinds:
                for name, url, pid in order:
                    before = transactions(postgres)
                    got = measure(url, pid, kind, bodies, args, wrk_pin)
                    if name != FOLDER:  # both PostgreSQL rows are the replica on the database
                        sent = got.run.rps * (args.seconds + 1.0)  # with wrk's warm-up second
                        got = replace(
                            got, db_per_1000=(transactions(postgres) - before) / sent * 1000
                        )
                    res.setdefault((name, kind.name), []).append(got)
                    run = got.run
                    flag = f"  ERRORS {run.errors}" if run.errors else ""
                    print(f"  run {i + 1}/{args.runs} {name} {kind.name}: {run.rps:.0f} req/s, "
                          f"p99 {run.p99:.2f} ms, server CPU {got.cpu_us:.0f} us/req{flag}",
                          file=sys.stderr)  # fmt: skip
    return res


def ratio_rows(res: dict[tuple[str, str], list[Measured]], batch: int) -> list[list[str]]:
    """Each ratio of medians, the range of the ratios within single runs, and its target."""
    rps, p99, per_cpu = attrgetter("run.rps"), attrgetter("run.p99"), attrgetter("per_cpu")
    checks = [  # label, numerator, denominator, kind, what, the least it may be (or None)
        ("single JSON req/s, PostgreSQL / folder backend", POSTGRES, FOLDER, "json", rps,
         MIN_POSTGRES),
        ("single JSON req per server CPU-second, PostgreSQL / folder backend", POSTGRES, FOLDER,
         "json", per_cpu, None),
        (f"{batch} raw images/s, PostgreSQL / folder backend", POSTGRES, FOLDER, "raw-out", rps,
         None),
        ("single JSON req/s, via haproxy / direct", BALANCED, POSTGRES, "json", rps, None),
        ("single JSON p99, via haproxy / direct", BALANCED, POSTGRES, "json", p99, None),
        ("single JSON req per server CPU-second, via haproxy / direct", BALANCED, POSTGRES,
         "json", per_cpu, None),
        (f"{batch} raw images/s, via haproxy / direct", BALANCED, POSTGRES, "raw-out", rps,
         None),
    ]  # fmt: skip
    rows = []
    for label, top, bottom, kind, what, least in checks:
        tops = [float(what(m)) for m in res[top, kind]]
        bottoms = [float(what(m)) for m in res[bottom, kind]]
        value = statistics.median(tops) / statistics.median(bottoms)
        each = [t / b for t, b in zip(tops, bottoms, strict=True)]  # within each run
        paired = f"{statistics.median(each):.2f} ({min(each):.2f}-{max(each):.2f})"
        target, met = ("-", "-") if least is None else (
            f">= {least:.2f}", "yes" if value >= least else "NO")  # fmt: skip
        rows.append([label, f"{value:.2f}", paired, target, met])
    return rows


def summary(name: str, measured: list[Measured], per_request: int) -> list[str]:
    cpu = statistics.median(m.cpu_us for m in measured)
    counted = [m.db_per_1000 for m in measured if m.db_per_1000 is not None]
    db = f"{statistics.median(counted):.2f}" if counted else "-"
    return [*serve.summary(name, [m.run for m in measured], per_request), f"{cpu:.0f}", db]


def throughput_tables(res: dict[tuple[str, str], list[Measured]], args: argparse.Namespace) -> str:
    names = (FOLDER, POSTGRES, BALANCED)
    single = [summary(name, res[name, "json"], 1) for name in names]
    batched = [summary(name, res[name, "raw-out"], args.batch) for name in names]
    header = [*serve.HEADER, "server CPU us/req", "DB transactions per 1000 req"]
    return "\n\n".join([
        f"One image as JSON, POST /predict ({args.connections} connections, {args.seconds:g} s "
        f"per run, medians over {args.runs} runs):",
        render(header, single, args.markdown),
        f"{args.batch} images as raw uint8, POST /predict, answered as raw float32:",
        render(header, batched, args.markdown),
        "Ratios of the medians; beside them, the median (and range) of the ratios within each "
        "run, taken a few seconds apart; and the targets:",
        render(["ratio", "of medians", "within runs", "target", "met"],
               ratio_rows(res, args.batch), args.markdown),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replicas",
        description="How soon a promotion reaches every replica on one PostgreSQL, and what the "
        "database and haproxy cost a prediction.",
    )
    add = parser.add_argument
    add("--runs", type=int, default=12, help="throughput runs of each server (%(default)s)")
    add("--seconds", type=float, default=3.0, help="seconds of each wrk run (%(default)s)")
    add("--promotions", type=int, default=20, help="promotions by activation (%(default)s)")
    add("--trainings", type=int, default=3, help="promotions by training first (%(default)s)")
    add("--connections", type=int, default=16, help="wrk connections (%(default)s)")
    add("--batch", type=int, default=1024, help="images per raw batch (%(default)s)")
    add("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.promotions < 1 or args.trainings < 1:
        parser.error("--runs, --promotions and --trainings must be at least 1")
    signal.signal(signal.SIGTERM, serve.interrupt)
    started = time.perf_counter()
    server_pin, wrk_pin = serve.pinning()
    cores = (f"server on core {server_pin[2]}, wrk and haproxy on {wrk_pin[2]}" if server_pin
             else "unpinned")  # fmt: skip
    print(f"machine: {processor()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"load average {load_average()}; {cores}")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp, running_postgres() as pg:
            print("promotions ...", file=sys.stderr)
            found = promotions(pg, Path(tmp), args.promotions, args.trainings)
            pg.empty()  # the PostgreSQL replica seeds it afresh: the shipped model, as the folder's
            print("throughput ...", file=sys.stderr)
            res = throughput(pg, Path(tmp), args)
    except KeyboardInterrupt:
        print("interrupted: every server, wrk and PostgreSQL stopped", file=sys.stderr)
        return 130
    print(f"\nPromotions reaching all {REPLICAS} replicas on one PostgreSQL (the periodic "
          "re-read every 3600 s: only LISTEN/NOTIFY brings them), seconds; each includes at "
          "least one GET's round trip:\n")  # fmt: skip
    print(promotion_tables(found, args.markdown))
    print("\nOne replica's predictions under wrk: on the folder backend (SQLite and the model "
          "folder), on PostgreSQL, and the same PostgreSQL replica through haproxy.\n")  # fmt: skip
    print(throughput_tables(res, args))
    if any(m.run.errors for runs in res.values() for m in runs):
        print("\nwrk saw errors: see the errors column and the per-run lines above.")
    print(f"\nNo scaling is claimed: on {os.cpu_count()} cores, three replicas, wrk and haproxy "
          "would share the same cores, so more replicas cannot show more throughput here. The "
          "haproxy rows are the balancer's cost in front of one replica, not the throughput of "
          "several.")  # fmt: skip
    print(f"\nafter: load average {load_average()}; benchmark took "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
