"""Three `python -m service` replicas sharing one real PostgreSQL, behind a real haproxy: what
goes on across machines. Training concurrency is 1 over all of them, so "never more than the
limit at once" is as strict as it gets; training runs on a small synthetic dataset.

1. Promotions, by training and by activation on any replica, reach every replica; a change
   nobody is told of (the pointer moved without a NOTIFY, as when a listener was away) arrives
   through the periodic re-read.
2. 60 submits at once: every accepted job runs exactly once, never two at a time, and every
   refusal is a 429.
3. A replica killed while its child trains: the job fails as interrupted, the child exits, no
   version comes from it, the next job runs elsewhere, and the balancer keeps answering. A lost
   host (replica and child both killed) has its job failed too.
4. The database restarts (``-m immediate``) with jobs running and queued: no prediction fails,
   every job ends well, and the next promotion reaches every replica.

Deadlines are generous; the latencies themselves belong to bench/replicas.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from service.jobs.record import INTERRUPTED, TERMINAL
from service.jobs.runner import STALE_AFTER
from tests.support.cluster import AUTH, Cluster, running_cluster
from tests.support.postgres import Postgres, running_postgres
from tests.support.procs import training_children
from tests.support.server import wait_for
from tests.synthetic import write_dataset

QUICK = {"epochs": 1}
LONG = {"epochs": 200, "batch_size": 4}  # several seconds on the synthetic set
IMAGE = {"pixels": [0] * 392 + [200] * 392}
QUEUE = 12


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:  # its own: one test restarts it
        yield server


@pytest.fixture(scope="module")
def cluster(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    env = {
        "SOFTSERVE_DATA_DIR": str(write_dataset(root / "synthetic")),
        "SOFTSERVE_TRAIN_CONCURRENCY": "1", "SOFTSERVE_TRAIN_QUEUE_SIZE": str(QUEUE),
    }  # fmt: skip
    with running_cluster(postgres, root, env=env, watch_interval=2.0) as running:
        yield running


def job(cluster: Cluster, job_id: str, via: int = 0) -> dict[str, Any]:
    response = httpx.get(f"{cluster.servers[via].url}/train/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def submit(cluster: Cluster, params: dict[str, Any], via: int = 0) -> dict[str, Any]:
    response = httpx.post(f"{cluster.servers[via].url}/train", json=params, headers=AUTH,
                          timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text
    return dict(response.json())


def in_state(
    cluster: Cluster, job_id: str, states: set[str] | frozenset[str], via: int = 0,
    timeout: float = 120, interval: float = 0.1,
) -> dict[str, Any]:  # fmt: skip
    """The job's record once its status is one of ``states``."""

    def seen() -> dict[str, Any] | None:
        record = job(cluster, job_id, via)
        return record if record["status"] in states else None

    return wait_for(seen, timeout=timeout, interval=interval)


def ended(cluster: Cluster, job_id: str, via: int = 0, timeout: float = 120) -> dict[str, Any]:
    return in_state(cluster, job_id, TERMINAL, via, timeout)


def running_count(postgres: Postgres) -> int:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM softserve_jobs WHERE status = 'running'")
        return int(row.fetchone()[0])  # type: ignore[index]


class Sampler(threading.Thread):
    """Calls ``probe`` every ``every`` seconds until stopped, keeping (time, result); then
    closes ``client``, if given (the one ``probe`` uses)."""

    def __init__(self, probe: Any, every: float = 0.02, client: httpx.Client | None = None) -> None:
        super().__init__(daemon=True)
        self.probe, self.every, self.client = probe, every, client
        self.seen: list[tuple[float, Any]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.seen.append((time.monotonic(), self.probe()))
            except Exception as e:  # a failure is a result too
                self.seen.append((time.monotonic(), e))
            self.done.wait(self.every)

    def stop(self) -> list[tuple[float, Any]]:
        self.done.set()
        self.join(30)
        if self.client is not None:
            self.client.close()
        return self.seen


def test_promotions_by_training_and_activation_reach_every_replica(cluster: Cluster) -> None:
    latencies: list[float] = []
    versions: list[str] = []
    for n in range(20):
        via = n % 3
        if n % 4 == 0:  # 5 by training, each through another replica
            done = ended(cluster, submit(cluster, QUICK | {"force": True}, via)["job_id"], via)
            assert done["status"] == "succeeded" and done["promoted"], done
            target = str(done["version"])
        else:  # 15 by activation, back and forth among the kept versions
            current = cluster.served(via)
            target = next(v for v in reversed(cluster_versions(cluster, via)) if v != current)
            response = httpx.post(f"{cluster.servers[via].url}/models/softmax/activate",
                                  json={"version": target}, headers=AUTH, timeout=30)  # fmt: skip
            assert response.status_code == 200, response.text
        start = time.monotonic()
        wait_for(functools.partial(cluster.serving, target), timeout=60, interval=0.01)
        latencies.append(time.monotonic() - start)
        versions.append(target)
    assert len(set(versions)) >= 5  # every trained version was served
    print(f"until every replica served it: median {sorted(latencies)[10]:.3f} s,"
          f" max {max(latencies):.3f} s")  # fmt: skip


def test_a_change_nobody_was_told_of_arrives_through_the_periodic_reread(
    cluster: Cluster, postgres: Postgres
) -> None:
    """The pointer moved without a NOTIFY: what a listener misses while it is disconnected."""
    current = cluster.served(0)
    other = next(
        v["version"]
        for v in httpx.get(f"{cluster.servers[0].url}/models/softmax/versions").json()["versions"]
        if v["version"] != current
    )
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE softserve_models SET active_version = %s, changes = changes + 1"
            " WHERE name = 'softmax'",
            (other,),
        )
    wait_for(lambda: cluster.serving(other), timeout=60)  # the re-read is every 2 s here


def test_sixty_submits_at_once_run_each_accepted_job_exactly_once(
    cluster: Cluster, postgres: Postgres
) -> None:
    sampler = Sampler(lambda: running_count(postgres))
    sampler.start()

    def post(n: int) -> httpx.Response:
        return httpx.post(f"{cluster.servers[n % 3].url}/train", json=QUICK, headers=AUTH,
                          timeout=60)  # fmt: skip

    with ThreadPoolExecutor(60) as pool:
        responses = list(pool.map(post, range(60)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {202, 429}, [
        r.text for r in responses if r.status_code not in (202, 429)
    ]
    accepted = [r.json()["job_id"] for r in responses if r.status_code == 202]
    assert QUEUE <= len(accepted) < 60 and len(set(accepted)) == len(accepted)
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "queue_full", r.text
    records = [ended(cluster, job_id, via=i % 3, timeout=300) for i, job_id in enumerate(accepted)]
    samples = [value for _, value in sampler.stop()]
    assert [r["status"] for r in records] == ["succeeded"] * len(accepted), records
    assert max(v for v in samples if isinstance(v, int)) <= 1  # the limit, across replicas
    # exactly once: each job was started by one replica, once, and its history has one run
    started = dict.fromkeys(accepted, 0)
    for server in cluster.servers:
        for line in server.log_text().splitlines():
            for job_id in accepted:
                if f"job {job_id} (softmax) started in process" in line:
                    started[job_id] += 1
    assert set(started.values()) == {1}, started
    assert {r["replica"] for r in records} <= set(cluster.names)
    assert all(len(r["history"]) == 2 for r in records)  # one select epoch, one refit epoch


def test_submitted_on_one_watched_on_a_second_and_cancelled_on_a_third(cluster: Cluster) -> None:
    first = submit(cluster, LONG, via=0)
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{cluster.servers[1].url}/train/{first['job_id']}/events",
                      timeout=60) as stream:  # fmt: skip
        name, cancelled = "", None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, orjson.loads(line.removeprefix("data: "))))
                if cancelled is None and name == "progress" and events[-1][1]["progress"]:
                    cancelled = httpx.delete(f"{cluster.servers[2].url}/train/{first['job_id']}",
                                             headers=AUTH, timeout=30)  # fmt: skip
                    assert cancelled.status_code in (200, 202), cancelled.text
                if name == "end":
                    break
    assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled", events[-1]
    assert any(body["status"] == "running" and body["progress"] for _, body in events)
    record = job(cluster, first["job_id"], via=2)
    assert record["status"] == "cancelled" and record["version"] is None
    assert record["latest"] == events[-1][1]["latest"]


def lb_predictions(cluster: Cluster) -> Sampler:
    assert cluster.balancer is not None
    client = httpx.Client(base_url=cluster.balancer.url, timeout=10)
    return Sampler(lambda: client.post("/predict", json=IMAGE).status_code, 0.01, client)


def test_a_killed_replica_loses_its_job_to_interruption_and_the_next_runs_elsewhere(
    cluster: Cluster,
) -> None:
    versions_before = set(cluster_versions(cluster))
    first = submit(cluster, LONG | {"force": True})
    victim_job = in_state(cluster, first["job_id"], {"running"}, interval=0.05)
    victim = cluster.names.index(victim_job["replica"])
    children = child_of(cluster, victim)
    following = submit(cluster, QUICK, via=(victim + 1) % 3)
    sampler = lb_predictions(cluster)
    sampler.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    cluster.kill(victim)
    alive = (victim + 1) % 3
    done = in_state(cluster, first["job_id"], TERMINAL, alive, STALE_AFTER + 5, 0.05)
    assert (done["status"], done["error"], done["version"]) == ("failed", INTERRUPTED, None)
    wait_for(lambda: not pid_alive(children[0]), timeout=30)  # the orphaned child stopped
    then = ended(cluster, following["job_id"], alive)
    assert then["status"] == "succeeded" and then["replica"] != cluster.names[victim], then
    time.sleep(4.0)
    seen = sampler.stop()
    during = [status for t, status in seen if t >= killed_at]
    settled = [status for t, status in seen if t >= killed_at + 3.0]
    assert sum(status == 200 for status in during) >= 0.99 * len(during), during
    assert settled and all(status == 200 for status in settled), settled
    assert set(cluster_versions(cluster, alive)) - versions_before == {then["version"]}
    cluster.start(victim)


def test_a_lost_host_has_its_job_failed_within_the_lease(cluster: Cluster) -> None:
    """The replica and its child both killed, as when a machine goes: nobody says the job
    ended, so another replica fails it, at the latest once its heartbeat is older than the
    lease (here, on one machine, as soon as it sees the owner's pid is gone; the containers'
    scenario, each replica its own host, waits for the lease itself)."""
    first = submit(cluster, LONG | {"force": True})
    running = in_state(cluster, first["job_id"], {"running"}, interval=0.05)
    victim = cluster.names.index(running["replica"])
    children = child_of(cluster, victim)
    versions_before = set(cluster_versions(cluster))
    cluster.kill(victim)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    alive = (victim + 1) % 3
    done = in_state(cluster, first["job_id"], TERMINAL, alive, STALE_AFTER + 5, 0.05)
    assert (done["status"], done["error"], done["version"]) == ("failed", INTERRUPTED, None)
    assert set(cluster_versions(cluster, alive)) == versions_before
    cluster.start(victim)


def test_a_database_restart_loses_no_prediction_and_no_job(
    cluster: Cluster, postgres: Postgres
) -> None:
    running = submit(cluster, LONG | {"force": True})
    queued = [submit(cluster, QUICK, via=i) for i in range(3)]
    in_state(cluster, running["job_id"], {"running"})
    samplers = []
    for server in cluster.servers:
        client = httpx.Client(base_url=server.url, timeout=10)
        samplers.append(
            Sampler(lambda c=client: c.post("/predict", json=IMAGE).status_code, client=client)
        )
    for sampler in samplers:
        sampler.start()
    postgres.restart("immediate")
    records = [ended(cluster, j["job_id"], timeout=180) for j in [running, *queued]]
    statuses = [status for sampler in samplers for _, status in sampler.stop()]
    assert statuses and all(status == 200 for status in statuses), set(map(str, statuses))
    assert [r["status"] for r in records] == ["succeeded"] * 4, records
    # the next promotion reaches every replica (their listeners reconnected by themselves)
    target = str(records[0]["version"])
    previous = next(v for v in cluster_versions(cluster) if v != target)

    def activated() -> bool:
        response = httpx.post(f"{cluster.servers[2].url}/models/softmax/activate",
                              json={"version": previous}, headers=AUTH, timeout=30)  # fmt: skip
        return response.status_code == 200

    wait_for(activated, timeout=60)  # the pools may still be reconnecting: 503 until then
    wait_for(lambda: cluster.serving(previous), timeout=60)


def child_of(cluster: Cluster, i: int) -> list[int]:
    """The one training process of replica ``i`` (a job is marked running when claimed, a
    moment before its process starts)."""
    children = wait_for(lambda: training_children(cluster.servers[i].process.pid), timeout=30)
    assert len(children) == 1, children
    return children


def cluster_versions(cluster: Cluster, via: int = 0) -> list[str]:
    body = httpx.get(f"{cluster.servers[via].url}/models/softmax/versions", timeout=10).json()
    return [v["version"] for v in body["versions"]]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process its new parent has not reaped yet does not)."""
    try:
        return "(zombie)" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
