"""The soak report's accounting of lost requests, on records made up for it."""

from __future__ import annotations

from typing import Any

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
