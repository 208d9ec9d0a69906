"""Every code block of README.md and docs/*.md runs as pasted.

Each document's Python and shell blocks run in order, in a temp folder holding a copy of the
shipped models, against a live server on that folder whose address replaces the documents'
``127.0.0.1:8000`` (and a folder of its own replaces their ``/tmp/``). A block that cannot run
here says so in its fence (```` ```sh no-run: the reason ````); a ```` ```python pytest ````
block is a test file, run by pytest with warnings as errors. JSON and text blocks are shown, not
run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.config import settings_table
from tests.support.server import REPO, Server, clean_env, copy_shipped_models, run_server

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN, SHOWN = {"python", "sh"}, {"json", "text"}
ADDRESS = "127.0.0.1:8000"
TOKEN = "change-me"  # what the documents' examples send
BLOCK_TIMEOUT = 600.0  # generous: a block that trains does so on the real data
README_LIMIT = 12 * 1024


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    options: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def skipped_because(self) -> str | None:
        return self.options.removeprefix("no-run:").strip() if self.skipped else None

    @property
    def skipped(self) -> bool:
        return self.options.startswith("no-run:")


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().splitlines()
    start: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.startswith("```"):
            if start is not None:
                body.append(line)
            continue
        if start is None:
            language, _, options = line[3:].strip().partition(" ")
            start, body = (number, language, options.strip()), []
        else:
            assert line == "```", f"{path.name}:{number}: a fence closes with ``` alone"
            found.append(Block(path, start[0], start[1], start[2], "\n".join(body) + "\n"))
            start = None
    assert start is None, f"{path.name}:{start[0]}: a block is never closed"
    return found


ALL = [block for path in DOCS for block in blocks(path)]


def test_every_block_runs_or_says_why_not() -> None:
    assert {path.name for path in DOCS} >= {
        "README.md", "configuration.md", "artifact-format.md", "reliability.md",
        "architecture.md", "training.md", "testing-with-httpx.md", "deployment.md",
    }  # fmt: skip
    for block in ALL:
        assert block.language in RUN | SHOWN, f"{block.where}: fence language {block.language!r}"
        if block.language in SHOWN:
            assert not block.options, f"{block.where}: options on a block that is not run"
        elif block.skipped:
            reason = block.skipped_because or ""
            assert len(reason.split()) >= 3, f"{block.where}: say why it cannot run here"
        else:
            allowed = {"", "pytest"} if block.language == "python" else {""}
            assert block.options in allowed, f"{block.where}: unknown options {block.options!r}"


def test_the_readme_fits_on_a_screen() -> None:
    size = len((REPO / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; reference belongs in docs/"


def test_the_settings_table_is_the_one_config_py_makes() -> None:
    """docs/configuration.md shows every setting as service/config.py defines it."""
    assert settings_table() in (REPO / "docs" / "configuration.md").read_text()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    copy_shipped_models(work / "models")
    return work


@pytest.fixture
def server(tmp_path: Path, workdir: Path, real_data_dir: Path) -> Iterator[Server]:
    env = {"SOFTSERVE_API_TOKEN": TOKEN, "SOFTSERVE_DATA_DIR": str(real_data_dir)}
    with run_server(tmp_path / "server", env, model_dir=workdir / "models") as running:
        yield running


def run_block(
    block: Block, workdir: Path, url: str, number: int
) -> subprocess.CompletedProcess[str]:
    """Run one block in ``workdir``, its server address replaced by ``url`` and its /tmp by a
    folder of ``workdir``, with this Python's environment first on the PATH (``python`` is this
    interpreter)."""
    code = block.code.replace(f"http://{ADDRESS}", url).replace(ADDRESS, url.split("//")[1])
    scratch = workdir / "tmp"
    scratch.mkdir(exist_ok=True)
    code = code.replace("/tmp/", f"{scratch}/")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = clean_env() | {"PATH": path}
    if block.language == "sh":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    elif block.options == "pytest":
        test = workdir / f"test_block_{number}.py"
        test.write_text(code)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"]
        cmd.append(test.name)
    else:
        script = workdir / f"block_{number}.py"
        script.write_text(code)
        cmd = [sys.executable, script.name]
    return subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )


@pytest.mark.parametrize("document", [p.relative_to(REPO).as_posix() for p in DOCS])
def test_the_blocks_of_a_document_run(document: str, workdir: Path, server: Server) -> None:
    runnable = [b for b in blocks(REPO / document) if b.language in RUN and not b.skipped]
    for number, block in enumerate(runnable):
        done = run_block(block, workdir, server.url, number)
        assert done.returncode == 0, (
            f"{block.where} failed ({done.returncode}):\n{block.code}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
    assert "Traceback" not in server.log_text()


def test_a_failing_block_fails_the_test(workdir: Path) -> None:
    """The harness itself: a block's failure is seen, in each language."""
    for language, options, code in (
        ("sh", "", "false\necho never"),
        ("python", "", "raise SystemExit(3)"),
        ("python", "pytest", "def test_no():\n    assert False\n"),
    ):
        block = Block(REPO / "README.md", 1, language, options, code)
        assert run_block(block, workdir, "http://127.0.0.1:9", 0).returncode != 0


def test_blocks_are_read_with_their_fence_options(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```sh no-run: needs the internet to fetch\ncurl x\n```\n"
        "```python pytest\ndef test_x():\n    pass\n```\n"
    )
    first, second = blocks(page)
    assert (first.language, first.skipped_because, first.code) == (
        "sh", "needs the internet to fetch", "curl x\n"
    )  # fmt: skip
    assert (second.language, second.options, second.line) == ("python", "pytest", 5)
    assert not re.search(r"no-run", second.code)
