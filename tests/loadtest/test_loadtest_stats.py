"""Percentiles and summaries on values worked out by hand."""

import math

import pytest

from loadtest.stats import RequestRecord, percentile, summarize


def test_percentile_interpolates_between_order_statistics() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted: 1 2 3 4; rank = 3 q / 100
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_bad_input() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="q must be in"):
        percentile([1.0], 101)


def test_summary_counts_statuses_and_measures_ok_latency_only() -> None:
    records = [
        RequestRecord("collapsed", start=0.0, latency=0.010, status=200),
        RequestRecord("collapsed", start=0.5, latency=0.020, status=200),
        RequestRecord("collapsed", start=1.0, latency=0.030, status=200),
        RequestRecord("collapsed", start=1.5, latency=0.001, status=503, retry_after="1"),
        RequestRecord("collapsed", start=1.9, latency=0.100, status=0),
    ]
    summary = summarize(records)
    assert summary.requests == 5
    assert summary.ok == 3
    assert summary.statuses == {"0": 1, "200": 3, "503": 1}
    assert summary.elapsed == pytest.approx(2.0)  # first send at 0, last answer at 1.9 + 0.1
    assert summary.throughput == pytest.approx(4 / 2.0)  # the transport error got no answer
    assert summary.ok_throughput == pytest.approx(3 / 2.0)
    assert summary.latency["p50"] == pytest.approx(0.020)
    assert summary.latency["max"] == pytest.approx(0.030)
    assert summary.latency["mean"] == pytest.approx(0.020)
    assert summary.latency_all["max"] == pytest.approx(0.100)


def test_summary_of_nothing_is_empty() -> None:
    summary = summarize([])
    assert (summary.requests, summary.ok, summary.throughput) == (0, 0, 0.0)
