"""The console's first paint: milliseconds from navigating to /ui to its first contentful paint,
and to the Try page being ready (the models listed), in headless Chromium (Debian's, through
Playwright), each load in a fresh browser context so nothing is cached. The reference, measured
in the same run: the first paint of /docs's stylesheet, a bare text page from the same server.

    python -m bench.console [--runs 7] [--markdown]

Also prints the size of the console's own assets (the budget is 300 KB, Swagger UI not counted).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from bench.train import render
from service.console import STATIC
from tests.support.server import run_server

TARGET_MS = 1000.0  # "first paint under 1 s locally"
_PAINT = (
    "() => (performance.getEntriesByName('first-contentful-paint')[0] || {startTime: NaN})"
    ".startTime"
)


def first_paint(browser: Browser, url: str, ready: str | None = None) -> tuple[float, float]:
    """(first contentful paint, ``ready`` selector present) in ms after navigation starts."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        readied = float("nan")
        if ready is not None:
            page.wait_for_selector(ready, state="attached")
            readied = float(page.evaluate("() => performance.now()"))
        page.wait_for_timeout(100)  # the paint entry is queued after the frame
        return float(page.evaluate(_PAINT)), readied
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    executable = shutil.which("chromium")
    if executable is None:
        print("chromium not installed: apt-get install chromium", file=sys.stderr)
        return 2
    console, ready, reference = [], [], []
    with (
        tempfile.TemporaryDirectory() as root,
        run_server(Path(root)) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        first_paint(browser, f"{server.url}/ui")  # warm the server, not the browser
        for _ in range(args.runs):
            paint, shown = first_paint(browser, f"{server.url}/ui", "#try-model option")
            console.append(paint)
            ready.append(shown)
            reference.append(first_paint(browser, f"{server.url}/ui/assets/console.css")[0])
        browser.close()
    median = statistics.median(console)
    rows = [
        ["console /ui, first contentful paint", f"{median:.0f}",
         f"{min(console):.0f}-{max(console):.0f}"],
        ["console /ui, models listed (ready)", f"{statistics.median(ready):.0f}",
         f"{min(ready):.0f}-{max(ready):.0f}"],
        ["reference: a bare stylesheet, first paint", f"{statistics.median(reference):.0f}",
         f"{min(reference):.0f}-{max(reference):.0f}"],
    ]  # fmt: skip
    print(render(["page", "median ms", "min-max ms"], rows, args.markdown))
    size = sum(f.stat().st_size for f in STATIC.iterdir())
    ratio = median / statistics.median(reference)
    print(f"\nconsole first paint / reference: {ratio:.2f}; target: first paint under "
          f"{TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'NOT met'}")  # fmt: skip
    print(f"console assets: {size / 1024:.1f} KB (budget 300 KB, Swagger UI not counted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
