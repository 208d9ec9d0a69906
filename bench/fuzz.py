"""schemathesis against the service for longer than CI runs it: every operation of the OpenAPI
schema in every phase (examples, coverage, fuzzing, stateful sequences along the links), with the
token and then without it, against a real uvicorn process on a copy of the shipped models.

    python -m bench.fuzz [--examples N] [--seconds S] [--seed N] [--markdown]

The server and the checks are those of tests/service/test_fuzz.py (tests.support.fuzzing): no
5xx; statuses, content types, headers and bodies as documented; schema-invalid input rejected; a
created job readable. Prints, per operation, the cases sent, the statuses seen and the failures,
then the totals. Exits 1 on any server error, check failure, error of the run or traceback in the
server's log; never asserts on time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import schemathesis

from bench.train import render
from tests.support.fuzzing import OTHER_METHODS, TOKEN, Report, fuzz, fuzz_config, fuzz_server


def table(report: Report, markdown: bool) -> str:
    """One row per documented operation, and one for the methods the paths do not take."""
    ops = report.operations
    order = sorted(ops, key=lambda k: (k == OTHER_METHODS, k.split(" ", 1)[-1], k))
    rows = [[k, str(ops[k].cases), statuses(ops[k].statuses), failures(ops[k].failures)]
            for k in order]  # fmt: skip
    return render(["operation", "cases", "statuses seen", "failures"], rows, markdown)


def statuses(counts: Counter[int | None]) -> str:
    return " ".join(
        f"{s or 'none'}x{n}" for s, n in sorted(counts.items(), key=lambda i: i[0] or 0)
    )


def failures(counts: Counter[str]) -> str:
    return ", ".join(f"{title} x{n}" for title, n in sorted(counts.items())) or "0"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description="schemathesis against a running service."
    )
    add = parser.add_argument
    add("--examples", type=int, default=1000, help="cases per operation and phase (%(default)s)")
    add("--seconds", type=int, help="stop each of the two runs after this long (default: none)")
    add("--seed", type=int, help="random generation from this seed (default: derandomized)")
    add("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error(f"--examples must be at least 1, got {args.examples}")
    if args.seconds is not None and args.seconds < 1:
        parser.error(f"--seconds must be at least 1, got {args.seconds}")

    bad = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="softserve-fuzz-") as tmp:
        with fuzz_server(Path(tmp)) as server:
            print(f"service at {server.url}; schemathesis {schemathesis.__version__}", flush=True)
            for title, token in (("with the token", TOKEN), ("without the token", None)):
                config = fuzz_config(
                    token=token, max_examples=args.examples, seconds=args.seconds, seed=args.seed
                )
                schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
                report = fuzz(schema)
                totals = f"{report.failures} failures, {report.server_errors} server errors"
                print(f"\n{title}: {report.cases} cases in {report.seconds:.1f} s, {totals}")
                print(table(report, args.markdown), flush=True)
                for line in report.problems():
                    print(f"  {line}")
                bad += len(report.problems()) + report.server_errors
            log = server.log_text()
        if "Traceback" in log:
            at = log.index("Traceback")
            print(f"\nthe server's log holds a traceback:\n{log[max(0, at - 500) : at + 4000]}")
            bad += 1
    print(f"\n{'FAILED' if bad else 'clean'}: {time.perf_counter() - started:.0f} s in all")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
