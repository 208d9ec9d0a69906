"""A bounded mixed load (the request mix bench.soak also sends, a fixed number of rounds from four
clients) while a training job runs: every request answered 2xx, the server ready and clean
afterwards. The timed 60 s soak with wrk is `python -m bench.soak`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tests.support.requests import mix
from tests.support.server import run_server
from tests.support.training import AUTH, TOKEN, wait_done
from tests.synthetic import write_dataset

CLIENTS, ROUNDS = 4, 10


def test_every_request_of_a_mixed_load_succeeds_while_a_job_trains(
    tmp_path: Path, test_images: tuple[NDArray[np.uint8], NDArray[np.uint8]]
) -> None:
    requests = mix(test_images[0])
    data = write_dataset(tmp_path / "data")
    env = {"SOFTSERVE_DATA_DIR": str(data), "SOFTSERVE_API_TOKEN": TOKEN}
    failures: list[str] = []
    answered = [0] * CLIENTS

    with run_server(tmp_path, env) as server:

        def client_loop(index: int) -> None:
            with server.client() as client:
                for round_ in range(ROUNDS):
                    for r in requests[index:] + requests[:index]:  # different orders at once
                        reply = client.request(
                            r.method, r.path, content=r.body, headers=r.headers()
                        )
                        if 200 <= reply.status_code < 300:
                            answered[index] += 1
                        else:
                            failures.append(f"{round_} {r.method} {r.path}: {reply.status_code}")

        with server.client() as client:
            job = client.post("/train", json={"epochs": 30, "batch_size": 8}, headers=AUTH).json()
            threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            done = wait_done(client, job["job_id"])
            assert client.get("/health/ready").status_code == 200
        log = server.log_text()

    assert failures == []
    assert answered == [ROUNDS * len(requests)] * CLIENTS
    assert done["status"] == "succeeded", done
    assert "Traceback" not in log
