"""Report output on a synthetic measurement: strict JSON, markdown tables, per-request CSV."""

import json
import math
from pathlib import Path

from loadtest.engines import LoadSpec, RunResult
from loadtest.measure import Measurement
from loadtest.report import markdown, sanitize, write_report
from loadtest.stats import RequestRecord
from loadtest.targets import healthz_target


def _measurement() -> Measurement:
    spec = LoadSpec((healthz_target("http://127.0.0.1:1"),), 2, 10, 1.0)
    records = [RequestRecord("healthz", 0.001 * i, 0.002 * (i + 1), 200) for i in range(4)]
    records.append(RequestRecord("healthz", 0.01, 0.001, 503, "1"))
    return Measurement("healthz c2", RunResult("httpx", spec, records, wall=0.02, stopped_by="count"), model=None)


def _report(m: Measurement) -> dict:
    return {
        "scenario": "run",
        "engine": "httpx",
        "base_url": "http://127.0.0.1:1",
        "started": "now",
        "command": "python -m loadtest run",
        "engine_ceiling": "healthz c2: 1/s",
        "machine": {"cpus": 2},
        "result": {"checks": {"zero_errors": {"errors": 1, "passed": False}}, "passed": False},
        "measurements": [m.to_dict()],
        "plots": ["latency.png"],
    }


def test_sanitize_turns_nan_into_null_and_keys_into_text() -> None:
    assert sanitize({1: math.nan, "a": [math.inf, 2.0, (3,)]}) == {"1": None, "a": [None, 2.0, [3]]}


def test_markdown_shows_percentiles_statuses_and_failed_checks() -> None:
    text = markdown(sanitize(_report(_measurement())))
    # 200 latencies 2, 4, 6, 8 ms: p50 5 ms, p90 7.4 ms, max 8 ms
    assert "| healthz c2 | healthz | 5 | " in text
    assert "| 5.00 | 7.40 | 7.94 | 8.00 | 200: 4, 503: 1 |" in text
    assert "| zero_errors | FAIL | errors=1 |" in text
    assert "engine: **httpx**" in text
    assert "![latency.png](latency.png)" in text


def test_write_report_writes_strict_json_and_every_request(tmp_path: Path) -> None:
    m = _measurement()
    write_report(tmp_path, "report", _report(m), markdown, [m])
    report = json.loads((tmp_path / "report.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert report["measurements"][0]["client"]["healthz"]["statuses"] == {"200": 4, "503": 1}
    lines = (tmp_path / "requests.csv").read_text().splitlines()
    assert lines[0] == "run,series,start_s,latency_s,status,retry_after"
    assert len(lines) == 6
    assert lines[-1] == "healthz c2,healthz,0.010000,0.001000,503,1"
