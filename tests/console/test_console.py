"""The web console (/ui) and the offline /docs in a real browser: Debian's chromium, driven by
Playwright, against a real uvicorn process. Every page's requests are recorded (none may leave
127.0.0.1) and so are the browser console's errors (there must be none). Each test saves a
screenshot of what it saw in its temp folder."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.ci import unavailable
from tests.support.server import Server, run_server
from trainer.data import find_files, load_dataset

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

TOKEN = "console-token"
REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
WAIT = 60_000  # ms: generous, timings never go in tests


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        unavailable("chromium not installed: apt-get install chromium", "installed chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if find_files(REAL_DIR) is None:
        unavailable("Fashion-MNIST not installed", "installed dataset-fashion-mnist")
    env = {"SOFTSERVE_API_TOKEN": TOKEN, "SOFTSERVE_DATA_DIR": str(REAL_DIR)}
    with run_server(tmp_path_factory.mktemp("console"), env) as running:
        yield running


class Watched:
    """A page whose requests and console errors are recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.hosts: set[str] = set()
        self.errors: list[str] = []
        page.on("request", lambda r: self.hosts.add(_host(r.url)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def check(self, refused: tuple[int, ...] = ()) -> None:
        """No request left 127.0.0.1, and the console logged no error: the browser's own line
        for an API error the test provoked on purpose (a status in ``refused``) aside."""
        allowed = tuple(f"the server responded with a status of {s} " for s in refused)
        assert self.hosts <= {"127.0.0.1"}, self.hosts
        errors = [e for e in self.errors if not any(a in e for a in allowed)]
        assert errors == [], errors


def _host(url: str) -> str:
    """The host a request goes to (a blob: URL's is its creator's: nothing leaves the page)."""
    return urlsplit(url.removeprefix("blob:")).hostname or url


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    watched = Watched(context.new_page())
    yield watched
    watched.check()
    context.close()


def open_console(watched: Watched, server: Server, page: str = "try") -> Page:
    p = watched.page
    p.goto(f"{server.url}/ui#{page}")
    expect(p.locator("body[data-ready=true]")).to_have_count(1, timeout=WAIT)
    expect(p.locator("#try-model option")).not_to_have_count(0, timeout=WAIT)
    return p


def shown_answer(p: Page) -> dict[str, Any]:
    result = p.locator("#result")
    expect(result).to_have_count(1, timeout=WAIT)
    return {
        "probabilities": np.array(eval_json(result.get_attribute("data-probabilities"))),
        "label": int(result.get_attribute("data-label") or -1),
        "version": result.get_attribute("data-version"),
        "pixels": eval_json(p.locator("#seen").get_attribute("data-pixels")),
    }


def eval_json(text: str | None) -> Any:
    assert text is not None
    return json.loads(text)


# Every visible element with text of its own: its contrast against the first opaque background
# behind it, by WCAG 2's formula; those under AA (4.5, or 3 for large text), disabled ones aside.
CONTRAST = """() => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  }).reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !node.getClientRects().length || node.closest("[disabled]")) continue;
    const style = getComputedStyle(node);
    if (style.visibility === "hidden") continue;
    const a = lum(rgb(style.color)), b = lum(background(node));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const text = node.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${node.tagName} "${text}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28)).save(out, format="PNG")
    return out.getvalue()


def test_a_drawn_stroke_gets_what_predict_gives_for_the_same_pixels(
    watched: Watched, server: Server, tmp_path: Path
) -> None:
    p = open_console(watched, server)
    box = p.locator("#draw").bounding_box()
    assert box is not None
    p.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
    p.mouse.down()
    for step in range(12):
        p.mouse.move(box["x"] + box["width"] * (0.3 + 0.03 * step),
                     box["y"] + box["height"] * (0.2 + 0.05 * step))  # fmt: skip
    p.mouse.up()
    shown = shown_answer(p)
    pixels = shown["pixels"]
    assert len(pixels) == 784 and 5 < sum(v > 0 for v in pixels) < 400
    model = p.locator("#try-model").input_value()
    assert model == "softmax"
    with server.client() as client:
        direct = client.post(f"/predict?model={model}", json={"pixels": pixels}).json()
    assert direct["version"] == shown["version"]
    direct = direct["predictions"][0]
    np.testing.assert_allclose(shown["probabilities"], direct["probabilities"], atol=1e-6)
    assert shown["label"] == direct["label"]
    p.screenshot(path=str(tmp_path / "try-drawn.png"), full_page=True)


def test_an_uploaded_test_image_shows_its_class(
    watched: Watched, server: Server, real_data_dir: Path, tmp_path: Path
) -> None:
    data = load_dataset(real_data_dir)
    with server.client() as client:
        answers = client.post("/predict", json={"images": data.test_images[:20].tolist()}).json()
    labels = [a["label"] for a in answers["predictions"]]
    index = next(i for i, label in enumerate(labels) if label == data.test_labels[i])
    png = tmp_path / "test-image.png"
    Image.fromarray(data.test_images[index].reshape(28, 28)).save(png)
    p = open_console(watched, server)
    p.set_input_files("#file", str(png))
    shown = shown_answer(p)
    assert shown["pixels"] == data.test_images[index].tolist()  # 28x28 in: nothing resized
    assert shown["label"] == int(data.test_labels[index])
    expect(p.locator("#answer strong")).to_have_text(data.class_names[shown["label"]])
    p.locator("#random").click()
    expect(p.locator("#truth")).to_contain_text("Test image", timeout=WAIT)
    p.screenshot(path=str(tmp_path / "try-uploaded.png"), full_page=True)

    other = data.test_images[index + 1]
    drop = p.evaluate_handle(
        """([bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "drop.png", {type: "image/png"}));
            return transfer;
        }""",
        [list(png_bytes(other))],
    )
    p.dispatch_event("#draw", "drop", {"dataTransfer": drop})
    expect(p.locator("#seen")).to_have_attribute(
        "data-pixels", json.dumps(other.tolist()).replace(" ", ""), timeout=WAIT
    )


def test_training_draws_live_curves_cancel_works_and_activate_changes_the_pages(
    watched: Watched, server: Server, tmp_path: Path
) -> None:
    p = open_console(watched, server, "train")
    p.click("#train-form button[type=submit]")  # no token yet
    expect(p.locator("#train-error")).to_contain_text("token", timeout=WAIT)
    p.fill("#token", TOKEN)
    p.fill("#f-epochs", "0")
    p.click("#train-form button[type=submit]")
    expect(p.locator(".error[data-for=epochs]")).to_contain_text("greater than", timeout=WAIT)
    expect(p.locator("#f-epochs")).to_have_attribute("aria-invalid", "true")
    expect(p.locator("#f-epochs")).to_be_focused()
    p.fill("#f-epochs", "500")  # within the schema, over SOFTSERVE_TRAIN_MAX_EPOCHS (200)
    p.click("#train-form button[type=submit]")
    expect(p.locator(".error[data-for=epochs]")).to_contain_text(
        "SOFTSERVE_TRAIN_MAX_EPOCHS", timeout=WAIT
    )
    p.fill("#f-epochs", "3")
    p.check("#f-force")
    p.click("#train-form button[type=submit]")
    # at least two epoch points drawn live, from the event stream, before the job ends
    points = p.locator("#job-chart circle[data-series='train loss']")
    expect(points.nth(1)).to_be_attached(timeout=WAIT)
    expect(p.locator("#job[data-status=succeeded]")).to_have_count(1, timeout=WAIT)
    expect(p.locator("#job-status")).to_contain_text("succeeded, promoted: version", timeout=WAIT)
    p.screenshot(path=str(tmp_path / "train.png"), full_page=True)

    p.fill("#f-epochs", "200")
    p.uncheck("#f-force")
    p.focus("#f-epochs")
    p.keyboard.press("Enter")  # the form submits from the keyboard
    expect(p.locator("#job[data-status=running]")).to_have_count(1, timeout=WAIT)
    p.focus("#job-cancel")
    p.keyboard.press("Enter")
    expect(p.locator("#job[data-status=cancelled]")).to_have_count(1, timeout=WAIT)
    expect(p.locator("#jobs tr[data-status=cancelled]")).to_have_count(1, timeout=WAIT)

    p.goto(f"{server.url}/ui#models")
    p.fill("#token", TOKEN)
    card = p.locator("article[data-model=softmax]")
    expect(card.locator("tbody tr[data-version]")).to_have_count(2, timeout=WAIT)
    active = card.locator(".active-version").inner_text()
    older = card.locator("tbody tr[data-version]").nth(1).get_attribute("data-version")
    assert older and older != active
    card.locator(f"tr[data-version='{older}'] button").focus()
    p.keyboard.press("Enter")
    expect(card.locator(".active-version")).to_have_text(older, timeout=WAIT)
    expect(card.locator("table.confusion")).to_have_count(1, timeout=WAIT)
    p.screenshot(path=str(tmp_path / "models.png"), full_page=True)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/models/softmax").json()["version"] == older

    p.goto(f"{server.url}/ui#try")
    expect(p.locator("#try-model option")).not_to_have_count(0, timeout=WAIT)
    p.locator("#random").click()
    assert shown_answer(p)["version"] == older
    p.goto(f"{server.url}/ui#service")
    expect(p.locator("#service table")).to_have_count(1, timeout=WAIT)
    expect(p.locator("#service")).to_contain_text("POST /predict", timeout=WAIT)
    p.screenshot(path=str(tmp_path / "service.png"), full_page=True)
    watched.check(refused=(401, 422))  # the two the test provoked
    watched.errors.clear()


def test_docs_and_redoc_render_offline(watched: Watched, server: Server, tmp_path: Path) -> None:
    p = watched.page
    p.goto(f"{server.url}/docs")
    expect(p.locator(".opblock").first).to_be_visible(timeout=WAIT)
    assert p.locator(".opblock").count() > 20
    p.locator("button.authorize").click()
    p.locator(".auth-container input").fill(TOKEN)
    p.locator(".auth-btn-wrapper button.authorize").click()
    p.locator("button.btn-done").click()
    operation = p.locator(".opblock-delete", has_text="/train/{job_id}").first  # needs the token
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("input[placeholder='job_id']").fill("no-such-job")
    with p.expect_request(lambda r: "/train/no-such-job" in r.url) as sent:
        operation.locator("button.execute").click()
    assert sent.value.all_headers().get("authorization") == f"Bearer {TOKEN}"
    expect(operation.locator(".live-responses-table")).to_contain_text("404", timeout=WAIT)
    p.screenshot(path=str(tmp_path / "docs.png"))
    watched.check(refused=(404,))  # the unknown job, asked on purpose
    watched.errors.clear()
    p.goto(f"{server.url}/redoc")
    expect(p.get_by_text("softserve").first).to_be_visible(timeout=WAIT)
    p.screenshot(path=str(tmp_path / "redoc.png"))


@pytest.mark.parametrize("page", ["try", "models", "train", "service"])
def test_a_phone_wide_window_never_scrolls_sideways(
    browser: Browser, server: Server, tmp_path: Path, page: str
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    watched = Watched(context.new_page())
    try:
        p = open_console(watched, server, page)
        filled = {"try": "#try-model option", "models": "table.confusion", "train": "#jobs table",
                  "service": "#service table"}  # fmt: skip
        expect(p.locator(filled[page]).first).to_be_attached(timeout=WAIT)  # its data is in
        width = p.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{page}: {width} px wide"
        low = p.evaluate(CONTRAST)
        assert low == [], f"{page}: text below WCAG AA contrast: {low}"
        p.screenshot(path=str(tmp_path / f"phone-{page}.png"), full_page=True)
        watched.check()
    finally:
        context.close()


def test_the_try_page_works_from_the_keyboard(
    watched: Watched, server: Server, real_data_dir: Path, tmp_path: Path
) -> None:
    p = open_console(watched, server)
    reached: list[str] = []
    for _ in range(25):
        p.keyboard.press("Tab")
        reached.append(p.evaluate("document.activeElement.id || document.activeElement.tagName"))
    for control in ("token", "try-model", "try-version", "brush", "clear", "file", "invert",
                    "random"):  # fmt: skip
        assert control in reached, (control, reached)
    p.focus("#random")
    p.keyboard.press("Enter")
    expect(p.locator("#truth")).to_contain_text("Test image", timeout=WAIT)
    p.focus("#try-model")
    p.keyboard.press("ArrowUp")  # the other model: binary, listed first
    assert p.locator("#try-model").input_value() == "binary"
    expect(p.locator("#answer")).to_contain_text("binary version", timeout=WAIT)
    png = tmp_path / "key.png"
    Image.fromarray(load_dataset(real_data_dir).test_images[3].reshape(28, 28)).save(png)
    # Space on the focused file input opens the chooser. Headless Chromium sometimes drops the
    # first press while the page is still busy (CI saw it once), so the key is pressed again:
    # still from the keyboard alone.
    for attempt in range(3):
        p.focus("#file")
        try:
            with p.expect_file_chooser(timeout=10_000) as chooser:
                p.keyboard.press("Space")
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    chooser.value.set_files(str(png))
    expect(p.locator("#seen")).to_have_attribute(
        "data-pixels",
        str(load_dataset(real_data_dir).test_images[3].tolist()).replace(" ", ""),
        timeout=WAIT,
    )
    p.screenshot(path=str(tmp_path / "keyboard.png"), full_page=True)


def test_the_contrast_check_sees_grey_on_white(watched: Watched, server: Server) -> None:
    """CONTRAST itself: light grey text (2.3:1) is reported, the page's own is not."""
    p = open_console(watched, server)
    assert p.evaluate(CONTRAST) == []
    p.evaluate(
        """() => { const s = document.createElement("span"); s.textContent = "faint";
                   s.style.color = "#aaaaaa"; document.querySelector("main").append(s); }"""
    )
    assert [line.split(" ")[1] for line in p.evaluate(CONTRAST)] == ['"faint"']
