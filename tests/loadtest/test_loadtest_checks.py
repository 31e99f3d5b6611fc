"""Scenario verdicts on records worked out by hand: recovery, memory growth, overload checks, aims."""

import pytest

from loadtest.scenarios import memory_growth, normal_latency, recovery_seconds
from loadtest.scenarios.overload import _checks
from loadtest.stats import RequestRecord


def _probe(start: float, latency: float, status: int = 200, retry_after: str | None = None) -> RequestRecord:
    return RequestRecord("collapsed", start, latency, status, retry_after)


def test_recovery_is_the_start_of_the_first_normal_streak_after_the_load() -> None:
    probes = [_probe(9.0, 0.5), _probe(10.2, 0.9), _probe(10.5, 0.004, 503)]
    probes += [_probe(11.0 + 0.1 * i, 0.004) for i in range(3)] + [_probe(11.3, 0.2)]  # broken streak
    probes += [_probe(12.0 + 0.1 * i, 0.004) for i in range(5)]
    assert recovery_seconds(probes, load_end=10.0, normal=0.01) == pytest.approx(2.0)
    assert recovery_seconds(probes[:-1], load_end=10.0, normal=0.01) is None


def test_normal_latency_comes_from_the_probes_answered_before_the_load() -> None:
    probes = [_probe(0.1, 0.005), _probe(0.2, 0.007), _probe(0.3, 0.9, 503), _probe(0.4, 0.006), _probe(2.5, 3.0)]
    assert normal_latency(probes, before=2.0) == pytest.approx(0.012)  # twice the p50 (6 ms) of the three 200s
    assert normal_latency([_probe(0.1, 0.0005)], before=2.0) == pytest.approx(0.0025)  # at least p50 + 2 ms
    assert normal_latency(probes[2:3], before=2.0) is None  # no 200 before the load


def test_memory_growth_ignores_warmup_and_compares_later_samples_to_the_first() -> None:
    samples = [(0.0, 100.0), (5.0, 200.0), (10.0, 300.0), (15.0, 306.0), (20.0, 303.0)]
    result = memory_growth(samples, warmup=10.0)
    assert result["growth"] == pytest.approx(0.02)
    assert result["passed"] is True
    assert memory_growth([*samples, (25.0, 330.0)], warmup=10.0)["passed"] is False
    assert memory_growth(samples, warmup=20.0)["passed"] is None  # one sample cannot show growth


def test_overload_checks() -> None:
    load = [_probe(0.1, 0.2), _probe(0.2, 0.001, 503, "1"), _probe(0.3, 10.5), _probe(0.4, 0.001, 503)]
    probes = [_probe(0.5, 0.3, 503, "1"), *(_probe(5.0 + 0.1 * i, 0.003) for i in range(5))]
    checks = _checks(load, True, probes, 10.0, 0.0, 4.0, 0.01, 5.0)
    assert checks["only_200_and_503"] == {"statuses": [200, 503], "passed": True}
    assert checks["retry_after_on_503"]["missing_header"] == 1
    assert checks["retry_after_on_503"]["passed"] is False
    assert checks["accepted_within_deadline"]["slowest_s"] == pytest.approx(10.5)
    assert checks["accepted_within_deadline"]["passed"] is False
    assert checks["recovery"]["seconds"] == pytest.approx(1.0)
    assert checks["recovery"]["passed"] is True
    hey_checks = _checks(load, False, probes, 11.0, 0.0, 4.0, 0.01, 5.0)  # hey: only the prober sees headers
    assert hey_checks["retry_after_on_503"]["passed"] is True
    assert hey_checks["accepted_within_deadline"]["passed"] is True
