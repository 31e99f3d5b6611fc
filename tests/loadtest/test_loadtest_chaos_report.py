"""The soak report's accounting of lost requests, on records made up for it."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.chaos_report import analyse


def _record(start: float, status: str, *, wrong: bool = False, in_flight: bool = False) -> dict[str, Any]:
    return {
        "start": start,
        "series": "predict",
        "model": "m",
        "digit": 3,
        "status": status,
        "latency": 0.01,
        "label": 3,
        "wrong": wrong,
        "in_flight_at_kill": in_flight,
    }


def _run(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "records": records,
        "kills": [],
        "reloads": [],
        "bursts": [],
        "memory": [],
        "quiet_s": 10.0,
        "memory_warmup_s": 0.0,
        "tracebacks": 0,
    }


def test_every_answer_but_ok_to_a_well_formed_request_is_lost_and_only_a_kill_excuses_it() -> None:
    records = [_record(float(t), "200") for t in range(20)]
    records += [
        _record(12.0, "408"),  # the load's requests are well formed: a timeout of one is the server's failing
        _record(13.0, "RESOURCE_EXHAUSTED"),
        _record(14.0, "503"),
        _record(15.0, "no answer: RemoteProtocolError", in_flight=True),
        _record(16.0, "200", wrong=True),
        _record(17.0, "OK"),
    ]
    analysis = analyse(_run(records))
    assert [(r["status"], r["kind"]) for r in analysis["lost"]] == [
        ("408", "refused"),
        ("RESOURCE_EXHAUSTED", "refused"),
        ("503", "server error"),
        ("200", "wrong answer"),
    ]
    assert [r["status"] for r in analysis["in_flight_at_kills"]] == ["no answer: RemoteProtocolError"]
    assert analysis["answered_ok"] == 22
    aims = analysis["aims"]
    assert aims["no requests lost beyond those in flight at kills"] == {"value": 4, "passed": False}
    assert aims["no wrong answers"] == {"value": 1, "passed": False}


def _worker(pid: int, leak_mib_per_10min: float) -> list[dict[str, Any]]:
    """A sample every 5 s for 30 min: a floor of 800 MiB rising at ``leak``, and a reload's +200 MiB transient
    every minute, longer in the second half (so that an every-sample fit sees growth that is not there)."""
    samples = []
    for t in range(0, 1800, 5):
        floor = 800 + leak_mib_per_10min * t / 600
        transient = 200 if t % 60 < (10 if t < 900 else 25) else 0
        pss = int((floor + transient) * 2**20)
        samples.append({"t": float(t), "pid": pid, "pss_bytes": pss, "rss_bytes": pss, "uss_bytes": pss // 2})
    return samples


def test_pss_is_fitted_on_each_minutes_floor_so_reload_transients_are_not_taken_for_growth() -> None:
    run = _run([_record(float(t), "200") for t in range(20)])
    run |= {"memory": _worker(1, 0.0) + _worker(2, 10.0), "memory_warmup_s": 300.0}
    memory = analyse(run)["memory"]
    flat, leaking = memory["1"], memory["2"]
    assert flat["floor_slope_mib_per_10min"] == pytest.approx(0.0, abs=1e-9)
    assert flat["slope_mib_per_10min"] > 10  # the longer transients alone
    assert leaking["floor_slope_mib_per_10min"] == pytest.approx(10.0, rel=0.01)
    assert leaking["uss_floor_slope_mib_per_10min"] == pytest.approx(5.0, rel=0.01)
    assert flat["floor_first_mib"] == pytest.approx(800.0) and flat["floor_last_mib"] == pytest.approx(800.0)
    assert flat["fitted"] == 300 and flat["samples"] == 360
    aim = analyse(run)["aims"]["PSS slope < 1.0 MiB per 10 min (worst worker, each minute's lowest sample)"]
    assert aim["passed"] is False and aim["value"] == pytest.approx(10.0, rel=0.01)
