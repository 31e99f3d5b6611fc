"""The comparison page in a real browser: Debian's chromium driven by Playwright, against a real server.

Without chromium or Playwright these tests fail under CI (``CI`` set: ``.ci/run`` installs both) and skip
elsewhere. With ``FOLDSERVE_SCREENSHOTS=DIR`` the last test serves the shipped ``model_store/``, writes the
page as a phone and a wide screen shows it (``DIR/ui-phone.png``, ``DIR/ui-wide.png``, as in docs/img/) and
prints the first contentful paint of ``/`` (``performance.getEntriesByName('first-contentful-paint')``, seven
fresh page loads).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.store import InputSpec, save_checkpoint
from tests.helpers import missing
from tests.server import Server, eventually
from tests.serving.conftest import LABELS, build_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIGIT = ROOT / "examples" / "digit-7.png"
HOSTILE = "<img src=x onerror=alert(1)>"
MODEL = "digits"


def _chromium() -> str:
    """The browser's path, or a failure under CI and a skip elsewhere."""
    absent = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        absent.append("Playwright for Python (pip install -e '.[dev]')")
    path = shutil.which("chromium")
    if path is None:
        absent.append("chromium (apt-get install chromium)")
    if absent:
        missing("the browser tests need " + " and ".join(absent))
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on one 28x28 digit model (so the page shows its drawing pad) whose first label is hostile."""
    root = tmp_path_factory.mktemp("ui-store")
    spec = InputSpec(channels=1, height=28, width=28, mean=[0.13], std=[0.31])
    labels = [HOSTILE, *LABELS[1:]]
    save_checkpoint(root / "store" / MODEL, build_model("linear"), name=MODEL, input=spec, labels=labels)
    with Server(root / "store", root / "server.log", {"FOLDSERVE_DEVICE": "cpu"}) as server:
        yield server


class Visit:
    """One page in a fresh browser context, with every request, console error and dialog it caused."""

    def __init__(self, browser: Any, url: str, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.answers: dict[str, Any] = {}
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", self._dialog)
        self.page.on("response", self._response)
        self.page.goto(url)
        self.page.wait_for_selector(".card")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _response(self, response: Any) -> None:
        if "/predict?" in response.url:
            variant = "collapsed" if "collapsed=true" in response.url else "original"
            self.answers[variant] = response.json()

    def classify(self, image: Path, top_k: int = 3) -> None:
        """Upload ``image`` and wait for both answers."""
        self.page.fill("#top-k", str(top_k))
        self.page.set_input_files("#file", str(image))
        self._answered()

    def draw_seven(self) -> None:
        """Draw a 7 on the pad with the mouse and classify the drawing."""
        self.page.locator("#canvas").scroll_into_view_if_needed()  # the mouse reaches only what the viewport shows
        box = self.page.locator("#canvas").bounding_box()
        assert box is not None
        mouse = self.page.mouse
        at = [(0.25, 0.22), (0.75, 0.22), (0.45, 0.8)]
        mouse.move(box["x"] + at[0][0] * box["width"], box["y"] + at[0][1] * box["height"])
        mouse.down()
        for fx, fy in at[1:]:
            mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=12)
        mouse.up()
        self.page.click("#send-drawing")
        self._answered()

    def _answered(self) -> None:
        self.page.wait_for_selector("#agreement.agree, #agreement.disagree")
        eventually(lambda: len(self.answers) == 2, "both answers read")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, server: Server) -> Iterator[Visit]:
    page = Visit(browser, server.url + "/")
    yield page
    page.close()


def test_the_page_loads_with_no_console_error_and_asks_no_other_host(visit: Visit, server: Server) -> None:
    visit.page.wait_for_function("document.querySelector('#chart-latency').childElementCount > 0")  # stats polled
    assert visit.page.locator(".card h3").all_inner_texts() == [MODEL]
    assert visit.page.is_visible("#pad"), "a 28x28 grayscale model gets a drawing pad"
    assert visit.errors == []
    assert visit.requests and all(url.startswith(server.url + "/") for url in visit.requests), visit.requests
    assert {url.removeprefix(server.url) for url in visit.requests} >= {"/", "/ui/app.js", "/ui/style.css", "/models"}


def test_an_uploaded_digit_gets_both_answers_and_they_are_predicts(visit: Visit, server: Server) -> None:
    visit.classify(DIGIT, top_k=3)
    for variant, collapsed in (("collapsed", "true"), ("original", "false")):
        url = f"{server.url}/predict?model={MODEL}&collapsed={collapsed}&top_k=3"
        direct = httpx.post(url, files={"file": DIGIT.read_bytes()}, timeout=10).raise_for_status().json()
        shown = visit.answers[variant]
        assert shown["variant"] == variant and shown["predictions"] == direct["predictions"]
        best = direct["predictions"][0]
        box = visit.page.locator(f"#answer-{variant}")
        assert box.locator(".top .label").inner_text() == best["label"]
        assert box.locator(".top .probability").inner_text() == f"{best['probability'] * 100:.2f}%"
        assert box.locator(".bars li").count() == 3
        assert box.locator(".timings dt").all_inner_texts() == ["decode", "queue", "inference", "total"]
    agree = (
        visit.answers["collapsed"]["predictions"][0]["index"] == visit.answers["original"]["predictions"][0]["index"]
    )
    assert visit.page.inner_text("#agreement").startswith("They agree" if agree else "They disagree")
    assert visit.errors == []


def test_the_chart_updates_after_traffic(visit: Visit, server: Server) -> None:
    points = "document.querySelector('[data-series=\"collapsed-p50\"]')?.dataset.points ?? '0'"
    visit.page.wait_for_function("document.querySelector('[data-series=\"collapsed-p50\"]') !== null")
    before = int(visit.page.evaluate(points))
    url = f"{server.url}/predict?model={MODEL}"

    def traffic_shown() -> bool:
        for _ in range(5):
            httpx.post(url, content=DIGIT.read_bytes(), headers={"content-type": "image/png"}, timeout=10)
        return int(visit.page.evaluate(points)) > before

    eventually(traffic_shown, "a new p50 point on the chart", timeout=30, interval=0.2)
    legend = visit.page.inner_text('#legend-latency [data-series="collapsed-p50"]')
    assert legend.startswith("collapsed p50: ") and legend.endswith(" ms"), legend
    assert visit.page.inner_text('#legend-rps [data-series="collapsed-rps"]').endswith(" /s")


def test_a_hostile_label_is_text_not_html(visit: Visit) -> None:
    visit.classify(DIGIT, top_k=len(LABELS))  # every label in the bars, the hostile one included
    assert visit.page.locator(".labels").inner_text().startswith(HOSTILE)
    assert visit.page.get_by_text(HOSTILE, exact=True).first.is_visible()
    assert visit.page.locator("#answer-collapsed .bar-label", has_text=HOSTILE).count() == 1
    assert visit.page.locator("img:not(#preview)").count() == 0, "the label became an element"
    assert visit.dialogs == [] and visit.errors == []


def _first_paint_ms(browser: Any, url: str) -> float:
    visit = Visit(browser, url)
    try:
        return float(visit.page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN"))
    finally:
        visit.close()


@pytest.mark.screenshots
def test_screenshots_and_first_paint_of_the_shipped_models(browser: Any, tmp_path: Path) -> None:
    """``make screenshots``: docs/img's pictures (or FOLDSERVE_SCREENSHOTS=DIR's) and the first paint of ``/``."""
    out = Path(os.environ.get("FOLDSERVE_SCREENSHOTS", tmp_path / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    shipped = {"FOLDSERVE_WARMUP_RUNS": "3", "FOLDSERVE_SPEEDUP_ROUNDS": "7", "FOLDSERVE_SPEEDUP_BLOCK_SECONDS": "0.01"}
    with Server(ROOT / "model_store", tmp_path / "server.log", {"FOLDSERVE_DEVICE": "cpu", **shipped}) as server:
        paints = [_first_paint_ms(browser, server.url + "/") for _ in range(7)]
        print(json.dumps({"first_contentful_paint_ms": paints, "median": statistics.median(paints)}))
        model = "linear-resnet18-mnist"  # the collapse with the largest speedup
        for name, context in {
            "ui-wide.png": {"viewport": {"width": 1280, "height": 900}},
            "ui-phone.png": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True},
        }.items():
            visit = Visit(browser, server.url + "/", **context)
            try:
                visit.page.select_option("#model", model)
                visit.draw_seven()
                for second in range(30):  # traffic for the charts: both variants, a few answers a second
                    for collapsed in ("true", "false"):
                        httpx.post(
                            f"{server.url}/predict?model={model}&collapsed={collapsed}",
                            content=(ROOT / "examples" / f"digit-{second % 10}.png").read_bytes(),
                            headers={"content-type": "image/png"},
                            timeout=10,
                        )
                    visit.page.wait_for_timeout(250)
                visit.page.wait_for_timeout(2500)  # one more poll
                if name == "ui-phone.png":  # the first screen shows the models; this one both answers
                    visit.page.locator("#canvas").evaluate("canvas => canvas.scrollIntoView()")
                    visit.page.screenshot(path=str(out / name))
                else:
                    visit.page.screenshot(path=str(out / name), full_page=True)
                assert visit.errors == []
            finally:
                visit.close()
