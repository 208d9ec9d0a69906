"""What the schemathesis runs share: the server they fuzz and the checks and bounds they apply.

tests/service/test_fuzz.py runs them bounded in CI, ``python -m bench.fuzz`` longer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import schemathesis
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.engine.recorder import ScenarioRecorder

from tests.support.server import Server, run_server
from tests.synthetic import write_dataset

__all__ = [
    "OTHER_METHODS",
    "PHASES",
    "SEED",
    "TOKEN",
    "Report",
    "Tally",
    "fuzz",
    "fuzz_config",
    "fuzz_server",
]

TOKEN = "fuzz-token"
SEED = 20261201
STATEFUL_STEPS = 6  # calls in one stateful sequence, at most
PHASES = ("examples", "coverage", "fuzzing", "stateful")
OTHER_METHODS = "any other method (405 expected)"  # PUT, PATCH, TRACE, ... to documented paths


def fuzz_config(
    *,
    token: str | None,
    max_examples: int,
    seconds: int | None = None,
    phases: Sequence[str] = PHASES,
    seed: int | None = None,
    mode: str = "all",
) -> SchemathesisConfig:
    """No 5xx; status codes, content types, headers and bodies as documented; schema-invalid
    input rejected; a created job readable. ``max_examples`` per operation and phase; the same
    cases on every run unless a ``seed`` asks for random ones."""
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED if seed is None else seed,
            **({"max-time": seconds} if seconds is not None else {}),
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
            "request-timeout": 10,  # a request hanging longer fails (a deadline per call)
            "max-stream-events": 1,  # SSE: the first event shows the shape; not until the job ends
            "generation": {
                "mode": mode,  # positive (valid by the schema), negative, or all
                "max-examples": max_examples,
                "deterministic": seed is None,  # the same cases on every run and machine
                "database": "none",  # nothing written to .hypothesis/ in the repository
            },
            "phases": {
                **{name: {"enabled": name in phases} for name in PHASES},
                "stateful": {"enabled": "stateful" in phases, "max-steps": STATEFUL_STEPS},
            },
            "checks": {
                # Valid by the schema is not always valid for the service, which checks more
                # than a schema can say: 783 pixels, a class the served model lacks, more epochs
                # than SOFTSERVE_TRAIN_MAX_EPOCHS. Those are documented 422s.
                "positive_data_acceptance": {"enabled": False},
                # DELETE /train/{id} cancels a job; the job stays readable, as documented.
                "use_after_free": {"enabled": False},
            },
        }
    )


@contextmanager
def fuzz_server(root: Path) -> Iterator[Server]:
    """The service on a copy of the shipped models, with the token set and a tiny synthetic
    training set, so the jobs the fuzzer starts end within a second or so."""
    data = write_dataset(root / "data", n_train=120, n_test=40)
    env = {
        "SOFTSERVE_DATA_DIR": str(data),
        "SOFTSERVE_API_TOKEN": TOKEN,
        # Short jobs keep the queue moving, so POST /train is not mostly a 429.
        "SOFTSERVE_TRAIN_MAX_EPOCHS": "3",
    }
    with run_server(root / "server", env) as server:
        yield server


@dataclass
class Tally:
    """What one operation (or one method sent to its path) got."""

    cases: int = 0
    statuses: Counter[int | None] = field(default_factory=Counter)  # None: no response at all
    failures: Counter[str] = field(default_factory=Counter)  # check failure titles
    reproduce: dict[str, str] = field(default_factory=dict)  # title -> the first one's request


@dataclass
class Report:
    operations: dict[str, Tally] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the run itself went wrong
    seconds: float = 0.0

    @property
    def cases(self) -> int:
        return sum(t.cases for t in self.operations.values())

    @property
    def failures(self) -> int:
        return sum(sum(t.failures.values()) for t in self.operations.values())

    @property
    def server_errors(self) -> int:
        return sum(
            n for t in self.operations.values() for s, n in t.statuses.items() if s and s >= 500
        )

    def count(self, method: str, path: str, status: int) -> int:
        tally = self.operations.get(f"{method} {path}")
        return tally.statuses[status] if tally else 0

    def problems(self) -> list[str]:
        """Every failure and error, one line each: empty when the run was clean."""
        lines = [f"{key}: {title} (x{n}): {t.reproduce[title]}"
                 for key, t in sorted(self.operations.items())
                 for title, n in sorted(t.failures.items())]  # fmt: skip
        return lines + self.errors


def fuzz(schema: schemathesis.BaseSchema) -> Report:
    """Run schemathesis's engine (what ``st run`` runs) and tally every case it sent.

    The engine, unlike a Hypothesis state machine run from pytest, allows for a server whose
    answers change under it (a job queue filling up): it retries a sequence that replays
    differently instead of calling it flaky."""
    report = Report()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            _tally(report, event.recorder)
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            report.seconds = event.running_time
    return report


def _tally(report: Report, recorder: ScenarioRecorder) -> None:
    for case_id, node in recorder.cases.items():
        case = node.value
        documented = case.method.upper() == case.operation.method.upper()
        key = case.operation.label if documented else OTHER_METHODS
        tally = report.operations.setdefault(key, Tally())
        tally.cases += 1
        interaction = recorder.interactions.get(case_id)
        response = interaction.response if interaction is not None else None
        tally.statuses[response.status_code if response is not None else None] += 1
        for check in recorder.checks.get(case_id, []):
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                title = f"{failure.code} {failure.title}"
                tally.failures[title] += 1
                tally.reproduce.setdefault(title, check.failure_info.code_sample)
