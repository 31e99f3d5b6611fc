"""The versus and memory arithmetic on numbers worked out by hand: medians, ratios, aims, PSS per worker."""

from typing import Any

import pytest

from loadtest.measure import server_side
from loadtest.promtext import parse_metrics
from loadtest.scenarios.memory import pss_added, second_worker_aim
from loadtest.scenarios.versus_aims import RATIOS, Aim, aims, medians, ratios

MIB = 2**20


def _cell(server: str, variant: str, c: int, answers: float, p50: float, p99: float, cpu: float | None, **kw: Any):
    return {
        "server": server,
        "model": "m",
        "variant": variant,
        "concurrency": c,
        "answers_per_s": answers,
        "p50_s": p50,
        "p99_s": p99,
        "cpu_per_answer_s": cpu,
        "ok": kw.get("ok", 100),
        "non_200": kw.get("non_200", {}),
    }


def test_medians_over_repetitions_skip_missing_figures_and_sum_errors() -> None:
    reps = [
        _cell("fs", "collapsed", 16, 1000.0, 0.001, 0.004, 0.0004, non_200={"503": 2}),
        _cell("fs", "collapsed", 16, 1400.0, 0.003, 0.002, None, ok=90, non_200={"503": 1, "504": 1}),
        _cell("fs", "collapsed", 16, 1100.0, 0.002, float("nan"), 0.0006),
        _cell("ref", "collapsed", 16, 900.0, 0.002, 0.003, 0.0005),
    ]
    med = medians(reps)
    fs = med[("fs", "m", "collapsed", 16)]
    assert fs["answers_per_s"] == 1100.0  # middle of three
    assert fs["p50_s"] == 0.002
    assert fs["p99_s"] == pytest.approx(0.003)  # NaN left out: the median of two is their mean
    assert fs["cpu_per_answer_s"] == pytest.approx(0.0005)  # None left out
    assert fs["repetitions"] == 3 and fs["ok"] == 290
    assert fs["non_200"] == {"503": 3, "504": 1}
    assert med[("ref", "m", "collapsed", 16)]["repetitions"] == 1


def _grid(**changes: float) -> dict:
    """Medians where foldserve ("fs") meets every aim exactly at, or just inside, its bound."""
    figures = {
        ("fs", "collapsed", 16): (850.0, 0.0008, 0.0019, 0.000125),
        ("ref", "collapsed", 16): (1000.0, 0.0007, 0.0015, 0.0001),
        ("fs", "original", 16): (240.0, 0.03, 0.05, 0.004),
        ("ref", "original", 16): (160.0, 0.04, 0.06, 0.005),
        ("fs", "collapsed", 1): (900.0, 0.00065, changes.get("fs_p99_c1", 0.0019), 0.0003),
        ("ref", "collapsed", 1): (1000.0, 0.0005, 0.001, 0.0003),
    }
    return {
        (server, "m", variant, c): {"answers_per_s": a, "p50_s": p50, "p99_s": p99, "cpu_per_answer_s": cpu}
        for (server, variant, c), (a, p50, p99, cpu) in figures.items()
    }


def test_ratios_are_the_issues_figures() -> None:
    r = ratios(_grid(), "fs", "ref", "m")
    assert tuple(r) == RATIOS
    assert r["answers_collapsed_c16_vs_reference"] == pytest.approx(0.85)
    assert r["p50_collapsed_c1_vs_reference"] == pytest.approx(1.3)
    assert r["p99_collapsed_c1_s"] == pytest.approx(0.0019)
    assert r["cpu_per_answer_collapsed_c16_vs_reference"] == pytest.approx(1.25)
    assert r["collapsed_over_original_c16_foldserve"] == pytest.approx(850 / 240)
    assert r["collapsed_over_original_c16_reference"] == pytest.approx(1000 / 160)
    assert r["answers_original_c16_vs_reference"] == pytest.approx(1.5)


ISSUE_9 = [
    Aim.parse(text)
    for text in (
        "answers_collapsed_c16_vs_reference>=0.85",
        "p50_collapsed_c1_vs_reference<=1.3",
        "p99_collapsed_c1_s<0.002",
        "collapsed_over_original_c16_foldserve>=3.5",
        "answers_original_c16_vs_reference>=1.5",
        "cpu_per_answer_collapsed_c16_vs_reference<=1.25",
    )
]


def test_aims_hold_at_their_bounds_and_fail_past_them() -> None:
    verdicts = {a["key"]: a["met"] for a in aims(ratios(_grid(), "fs", "ref", "m"), ISSUE_9)}
    assert verdicts == dict.fromkeys(verdicts, True) and len(verdicts) == 6
    strict = {a["key"]: a["met"] for a in aims(ratios(_grid(fs_p99_c1=0.002), "fs", "ref", "m"), ISSUE_9)}
    assert strict["p99_collapsed_c1_s"] is False  # "p99 < 2 ms" is strict
    worse = aims(
        {"answers_collapsed_c16_vs_reference": 0.84, "cpu_per_answer_collapsed_c16_vs_reference": 1.26}, ISSUE_9
    )
    met = {a["key"]: a["met"] for a in worse}
    assert met["answers_collapsed_c16_vs_reference"] is False
    assert met["cpu_per_answer_collapsed_c16_vs_reference"] is False
    assert met["p50_collapsed_c1_vs_reference"] is None  # not measured: no verdict
    assert aims(ratios(_grid(), "fs", "ref", "m"), ()) == []  # no aims given: none checked


def test_an_aim_is_parsed_from_the_command_line_or_refused() -> None:
    aim = Aim.parse("p99_collapsed_c1_s<=0.002")
    assert (aim.key, aim.op, aim.bound, aim.text) == ("p99_collapsed_c1_s", "<=", 0.002, "p99_collapsed_c1_s <= 0.002")
    assert Aim.parse("p99_collapsed_c1_s<0.002").op == "<"
    with pytest.raises(ValueError, match="'p42' is not one of answers_collapsed_c16_vs_reference"):
        Aim.parse("p42>=1")
    with pytest.raises(ValueError, match="expected KEY>=BOUND"):
        Aim.parse("p99_collapsed_c1_s=1")


def test_ratios_are_none_where_a_cell_is_missing() -> None:
    grid = {k: v for k, v in _grid().items() if k[3] != 1}  # concurrency 1 left out
    grid[("ref", "m", "collapsed", 16)] = {**grid[("ref", "m", "collapsed", 16)], "cpu_per_answer_s": None}
    r = ratios(grid, "fs", "ref", "m")
    assert r["p50_collapsed_c1_vs_reference"] is None and r["p99_collapsed_c1_s"] is None
    assert r["cpu_per_answer_collapsed_c16_vs_reference"] is None
    assert r["answers_collapsed_c16_vs_reference"] == pytest.approx(0.85)


def test_pss_added_per_extra_worker_and_the_second_worker_aim() -> None:
    totals = {1: 500.0 * MIB, 2: 700.0 * MIB, 4: 1000.0 * MIB}
    steps = pss_added(totals)
    assert [(s["from"], s["to"]) for s in steps] == [(1, 2), (2, 4)]
    assert steps[0]["added_bytes"] == 200 * MIB and steps[0]["per_worker_bytes"] == 200 * MIB
    assert steps[1]["added_bytes"] == 300 * MIB and steps[1]["per_worker_bytes"] == 150 * MIB
    assert second_worker_aim(totals)["met"] is True
    assert second_worker_aim({1: 500.0 * MIB, 2: 800.0 * MIB})["met"] is True  # exactly 300 MiB: at most
    assert second_worker_aim({1: 500.0 * MIB, 2: 801.0 * MIB})["met"] is False
    assert second_worker_aim({2: 700.0 * MIB, 4: 1000.0 * MIB})["met"] is None


def _exposition(predict: tuple[int, int], rest: tuple[int, int]) -> str:
    """Request series of one model's collapsed variant through two protocols: (answers in 1 ms bucket, in 5 ms)."""
    lines = ["# TYPE foldserve_requests counter", "# TYPE foldserve_request_duration_seconds histogram"]
    for protocol, (fast, slow) in (("predict", predict), ("v2-rest", rest)):
        labels = f'model="m",variant="collapsed",protocol="{protocol}"'
        lines.append(f'foldserve_requests_total{{{labels},status="200"}} {fast + slow}')
        for le, count in (("0.001", fast), ("0.005", fast + slow), ("+Inf", fast + slow)):
            lines.append(f'foldserve_request_duration_seconds_bucket{{{labels},le="{le}"}} {count}')
        lines.append(f"foldserve_request_duration_seconds_sum{{{labels}}} {fast * 0.0005 + slow * 0.003}")
        lines.append(f"foldserve_request_duration_seconds_count{{{labels}}} {fast + slow}")
    return "\n".join(lines) + "\n"


def test_server_side_figures_sum_over_the_protocol_label() -> None:
    before = parse_metrics(_exposition((10, 0), (0, 0)))
    after = parse_metrics(_exposition((40, 0), (0, 30)))  # 30 fast /predict answers, 30 slow v2 answers since
    figures = server_side(before, after, "m", "collapsed")
    assert figures["request"]["count"] == 60
    assert figures["request"]["mean"] == pytest.approx((30 * 0.0005 + 30 * 0.003) / 60)
    assert figures["request"]["p50"] == pytest.approx(0.001)  # rank 30 of 60: the top of the 1 ms bucket
    assert figures["requests_by_status"] == {"200": 60.0}
