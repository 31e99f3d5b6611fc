"""The engines against a fake server on 127.0.0.1: bounds, interleaving, open loop, hey's CSV."""

import shutil
from typing import Any

import pytest

from loadtest.engines import HeyEngine, HttpxEngine, LoadSpec, parse_hey_csv
from loadtest.measure import measure
from loadtest.targets import healthz_target, predict_target

IMAGES = [b"png-a", b"png-b", b"png-c"]


def _both(url: str) -> tuple:
    return tuple(predict_target(url, "fake", v, IMAGES) for v in ("collapsed", "original"))


def test_closed_loop_stops_at_the_count_and_interleaves_variants(fake_server: tuple[str, Any]) -> None:
    url, fake = fake_server
    result = HttpxEngine().run(LoadSpec(_both(url), concurrency=4, max_requests=30, max_duration=30.0))
    assert result.stopped_by == "count"
    assert len(result.records) == 30
    assert sum(r.label == "collapsed" for r in result.records) == 15
    assert {r.status for r in result.records} == {200}
    assert sorted(set(fake.bodies)) == IMAGES  # every image was sent


def test_closed_loop_stops_at_the_duration(fake_server: tuple[str, Any]) -> None:
    url, _ = fake_server
    result = HttpxEngine().run(LoadSpec((healthz_target(url),), 2, max_requests=10**7, max_duration=0.3))
    assert result.stopped_by == "duration"
    assert 0 < len(result.records) < 10**7
    assert max(r.start for r in result.records) < 0.3


def test_open_loop_sends_at_the_rate_and_records_retry_after(fake_server: tuple[str, Any]) -> None:
    url, fake = fake_server
    fake.reject = True
    spec = LoadSpec(_both(url)[:1], concurrency=8, max_requests=1000, max_duration=0.4, rate=50.0)
    result = HttpxEngine().run(spec)
    assert len(result.records) == 20  # arrivals at 0, 0.02, ..., 0.38 s
    assert sorted(round(r.start, 6) for r in result.records) == [round(i / 50, 6) for i in range(20)]
    assert {(r.status, r.retry_after) for r in result.records} == {(503, "1")}


def test_measure_puts_server_side_histograms_beside_the_client(fake_server: tuple[str, Any]) -> None:
    url, _ = fake_server
    spec = LoadSpec(_both(url), concurrency=2, max_requests=20, max_duration=30.0)
    m = measure(HttpxEngine(), spec, base_url=url, name="both c2", model="fake")
    server = m.server["original"]
    assert server["available"] is True
    assert server["inference"]["count"] == 10
    assert server["inference"]["p50"] == pytest.approx(0.055)  # 10 in (0.01, 0.1]: half-way
    assert m.server["collapsed"]["inference"]["p99"] == pytest.approx(0.00099)
    assert server["decode"]["count"] == 10
    assert server["queue"] is None  # the fake has no queue histogram
    assert server["requests_by_status"] == {"200": 10.0}
    assert m.summaries()["original"]["statuses"] == {"200": 10}


def test_parse_hey_csv() -> None:
    text = (
        "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset\n"
        "0.0043,0.0020,0.0000,0.0002,0.0017,0.0002,200,0.1829\n"
        "0.0009,0.0002,0.0000,0.0001,0.0005,0.0001,503,0.3662\n"
    )
    records = parse_hey_csv(text, "collapsed")
    assert [(r.label, r.start, r.latency, r.status) for r in records] == [
        ("collapsed", 0.1829, 0.0043, 200),
        ("collapsed", 0.3662, 0.0009, 503),
    ]


@pytest.mark.skipif(shutil.which("hey") is None, reason="the optional hey engine needs `apt-get install hey`")
def test_hey_engine_runs_both_variants_to_the_count(fake_server: tuple[str, Any]) -> None:
    url, fake = fake_server
    result = HeyEngine().run(LoadSpec(_both(url), concurrency=4, max_requests=40, max_duration=30.0))
    assert result.stopped_by == "count"
    assert sum(r.label == "original" for r in result.records) == 20
    assert {r.status for r in result.records} == {200}
    assert set(fake.bodies) == {IMAGES[0]}  # hey sends one body per target
    assert "transport errors (planned minus answered): 0" in result.notes
