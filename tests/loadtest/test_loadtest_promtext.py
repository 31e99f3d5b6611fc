"""Histogram quantiles and metric deltas, on buckets worked out by hand and on a real registry."""

import math

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from loadtest.promtext import histogram_quantile, parse_metrics

INF = math.inf


def test_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    bounds, counts = (0.1, 0.2, 0.4, INF), (10.0, 30.0, 40.0, 40.0)
    assert histogram_quantile(0.25, bounds, counts) == pytest.approx(0.1)  # rank 10: end of the first bucket
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.15)  # rank 20: half-way through (0.1, 0.2]
    assert histogram_quantile(0.9, bounds, counts) == pytest.approx(0.32)  # rank 36: 6/10 of (0.2, 0.4]
    assert histogram_quantile(1.0, bounds, counts) == pytest.approx(0.4)


def test_quantile_in_the_inf_bucket_answers_the_largest_finite_bound() -> None:
    assert histogram_quantile(0.99, (0.1, 0.2, 0.4, INF), (1.0, 1.0, 1.0, 2.0)) == 0.4


def test_quantile_without_observations_is_nan_and_bad_buckets_are_refused() -> None:
    assert math.isnan(histogram_quantile(0.5, (1.0, INF), (0.0, 0.0)))
    with pytest.raises(ValueError, match=r"\+Inf"):
        histogram_quantile(0.5, (1.0, 2.0), (1.0, 2.0))


def test_scrapes_give_the_histogram_of_the_interval_between_them() -> None:
    registry = CollectorRegistry()
    latency = Histogram("x_seconds", "x", ["model", "variant"], buckets=(0.01, 0.1, 1.0), registry=registry)
    rss = Gauge("process_resident_memory_bytes", "rss", registry=registry)
    rss.set(1234.0)
    for _ in range(5):
        latency.labels("m", "original").observe(0.5)  # before: 5 slow ones
    before = parse_metrics(generate_latest(registry).decode())
    for value in (0.005, 0.005, 0.05, 0.05):
        latency.labels("m", "original").observe(value)
    latency.labels("m", "collapsed").observe(0.005)
    after = parse_metrics(generate_latest(registry).decode())

    delta = after.histogram("x_seconds", model="m", variant="original").minus(
        before.histogram("x_seconds", model="m", variant="original")
    )
    assert delta.counts == (2.0, 4.0, 4.0, 4.0)
    assert delta.count == 4
    assert delta.mean() == pytest.approx(0.0275)
    assert delta.quantile(0.5) == pytest.approx(0.01)  # rank 2: end of the (0, 0.01] bucket
    assert delta.quantile(0.75) == pytest.approx(0.01 + 0.09 * 0.5)  # rank 3: half-way through (0.01, 0.1]
    assert after.value("process_resident_memory_bytes") == 1234.0
    assert after.histogram("x_seconds", model="m").count == 10  # both variants summed
    assert after.histogram("y_seconds") is None
