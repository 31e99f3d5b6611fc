"""The comparison page's routes through TestClient: the page and its files, their headers, /ui/stats, and
FOLDSERVE_UI=false. tests/serving/test_ui_browser.py drives the page itself in a browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.serving import create_app
from app.serving.metrics import LATENCY_BUCKETS, PROTOCOLS
from app.serving.quantiles import histogram_quantile
from app.serving.ui.routes import ASSETS
from tests.serving.conftest import digit_png, fast_settings, wait_until_loaded

STATIC = Path(__file__).resolve().parents[2] / "app" / "serving" / "ui" / "static"


@pytest.fixture(scope="module")
def client(store: Path) -> Iterator[TestClient]:
    with TestClient(create_app(fast_settings(store))) as client:
        wait_until_loaded(client)
        yield client


def _policy(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/", "/ui/"])
def test_the_page_is_served_at_the_root_and_under_ui(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (STATIC / "index.html").read_bytes()
    assert '<script src="/ui/app.js" defer></script>' in response.text


def test_ui_without_its_slash_redirects_to_the_page(client: TestClient) -> None:
    response = client.get("/ui", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"].endswith("/ui/")


@pytest.mark.parametrize(("name", "media_type"), [("app.js", "text/javascript"), ("style.css", "text/css")])
def test_the_page_files_are_served_with_their_types(client: TestClient, name: str, media_type: str) -> None:
    response = client.get(f"/ui/{name}")
    assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
    assert response.content == (STATIC / name).read_bytes()
    assert response.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_file_is_404_as_any_unknown_path(client: TestClient) -> None:
    response = client.get("/ui/secrets.txt")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.get("/ui/..%2Fconfig.py").status_code == 404


def test_every_static_file_is_listed() -> None:
    assert sorted(p.name for p in STATIC.iterdir()) == sorted(ASSETS)


def test_the_policy_allows_this_origin_only_and_no_inline_script(client: TestClient) -> None:
    policy = _policy(client.get("/").headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["connect-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for directive, sources in policy.items():
        assert not [s for s in sources if s not in ("'self'", "'none'", "blob:")], directive


def test_the_page_holds_no_inline_script_and_names_no_other_host() -> None:
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/ui/app.js" defer>']
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    assert "style=" not in html
    for name in ASSETS:
        text = (STATIC / name).read_text()
        hosts = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", text)) - {"http://www.w3.org"}  # the SVG namespace
        assert not hosts, f"{name} names {hosts}"


def test_the_script_never_writes_html() -> None:
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_stats_are_the_registry_histograms_quantiles(client: TestClient) -> None:
    registry = client.app.state.metrics.registry  # type: ignore[attr-defined]

    def buckets(variant: str) -> list[tuple[float, float]]:
        found = []
        for bound in (*LATENCY_BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else repr(bound)
            labels = {"model": "linear", "variant": variant, "le": le}
            count = sum(
                registry.get_sample_value("foldserve_request_duration_seconds_bucket", {**labels, "protocol": p}) or 0
                for p in PROTOCOLS
            )
            found.append((bound, count))
        return found

    png = {"content-type": "image/png"}
    for seed in range(4):
        assert client.post("/predict?model=linear", content=digit_png(seed), headers=png).status_code == 200
    assert client.post("/predict?model=linear&collapsed=false", content=digit_png(), headers=png).status_code == 200
    body = client.get("/ui/stats").json()
    assert (body["histogram"], body["step_s"], body["window_s"]) == ("foldserve_request_duration_seconds", 2.0, 300.0)
    assert set(body["models"]) == {"annealed", "linear"}
    for variant in ("collapsed", "original"):
        stats, counts = body["models"]["linear"][variant], buckets(variant)
        assert stats["requests"] == counts[-1][1] >= 1
        assert stats["p50_s"] == histogram_quantile(0.5, counts) > 0
        assert stats["p99_s"] == histogram_quantile(0.99, counts) >= stats["p50_s"]
    assert set(body["models"]["linear"]["collapsed"]["series"]) == {"time", "rps", "p50_s", "p99_s"}


def test_stats_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/ui/stats" in spec["paths"] and "LiveStatsBody" in spec["components"]["schemas"]
    assert "/" not in spec["paths"] and "/ui/{asset}" not in spec["paths"]


def test_ui_false_leaves_every_route_out(tmp_path: Path) -> None:
    with TestClient(create_app(fast_settings(tmp_path, ui=False))) as client:
        for path in ("/", "/ui/", "/ui/app.js", "/ui/stats"):
            response = client.get(path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path
        assert client.get("/healthz").status_code == 200


def test_foldserve_ui_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ui is True
    monkeypatch.setenv("FOLDSERVE_UI", "false")
    assert Settings().ui is False
