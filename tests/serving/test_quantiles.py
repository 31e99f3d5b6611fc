"""histogram_quantile: hand-computed values, the registry's own histograms, and promtool evaluating PromQL's
histogram_quantile on the same scraped samples (the live page's numbers are the ones Prometheus would give)."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.serving.metrics import ServingMetrics
from app.serving.quantiles import histogram_quantile
from app.serving.ui.stats import HISTOGRAM, STEP_S, LiveStats
from tests.helpers import missing

INF = math.inf
BUCKETS = [(0.1, 2.0), (0.2, 6.0), (0.5, 8.0), (INF, 10.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.05),  # rank 1 in the first bucket, which starts at 0: 0.1 * 1/2
        (0.5, 0.175),  # rank 5 in (0.1, 0.2], 3 of its 4: 0.1 + 0.1 * 3/4
        (0.8, 0.5),  # rank 8, the top of (0.2, 0.5]
        (0.9, 0.5),  # rank 9 in +Inf: the largest finite bound
        (0.0, 0.0),
        (1.0, 0.5),
        (-0.1, -INF),
        (1.1, INF),
    ],
)
def test_hand_computed_quantiles(q: float, expected: float) -> None:
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected, abs=0, rel=1e-15)


def test_the_order_of_the_buckets_does_not_matter() -> None:
    assert histogram_quantile(0.5, reversed(BUCKETS)) == histogram_quantile(0.5, BUCKETS)


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([(0.1, 0.0), (INF, 0.0)], 0.5, math.nan),  # no observations
        ([(0.1, 3.0), (0.2, 4.0)], 0.5, math.nan),  # no +Inf bucket
        ([(INF, 4.0)], 0.5, math.nan),  # one bucket
        ([(0.1, 5.0), (0.2, 3.0), (INF, 5.0)], 0.5, 0.05),  # a dip forced monotonic: counts 5, 5, 5
        ([(0.1, 1.0), (0.1, 1.0), (INF, 4.0)], 0.5, 0.1),  # equal bounds added: (0.1, 2)
        ([(-1.0, 2.0), (1.0, 4.0), (INF, 4.0)], 0.25, -1.0),  # a first bound <= 0 is returned as is
        ([(0.1, 0.0), (0.2, 5.0), (INF, 5.0)], 0.0, math.nan),  # q = 0 in an empty first bucket: 0/0
        ([(0.1, 1.0), (INF, 4.0)], math.nan, math.nan),
    ],
)
def test_edge_cases_as_promql(buckets: list[tuple[float, float]], q: float, expected: float) -> None:
    got = histogram_quantile(q, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected, got


# ---- against the registry and promtool ----------------------------------------------------------------------

OBSERVED = [0.00002, 0.00004, 0.00031, 0.00045, 0.0012, 0.0013, 0.0021, 0.009, 0.4, 12.0]
MORE = [0.00009, 0.00033, 0.0008, 0.003]


def _metrics() -> ServingMetrics:
    metrics = ServingMetrics(CollectorRegistry())
    metrics.add_model("m")
    return metrics


def _observe(metrics: ServingMetrics, seconds: list[float]) -> None:
    for i, value in enumerate(seconds):  # two protocols: the page sums them, as the recording rules do
        metrics.request("m", "collapsed", ("predict", "v2-rest")[i % 2]).done(200, value)


def _registry_buckets(metrics: ServingMetrics) -> list[tuple[float, float]]:
    """The collapsed variant's buckets read with get_sample_value, summed over protocols."""
    bounds = [float(s.labels["le"]) for s in next(iter(metrics.request_duration.collect())).samples if "le" in s.labels]
    sums: dict[float, float] = {}
    for bound in bounds:
        le = "+Inf" if bound == INF else repr(bound)
        sums[bound] = sum(
            metrics.registry.get_sample_value(
                HISTOGRAM + "_bucket", {"model": "m", "variant": "collapsed", "protocol": p, "le": le}
            )
            or 0.0
            for p in ("predict", "v2-rest", "v2-grpc")
        )
    return sorted(sums.items())


def test_live_totals_are_the_registry_histograms_quantiles() -> None:
    metrics = _metrics()
    _observe(metrics, OBSERVED)
    body = LiveStats(metrics, clock=lambda: 0.0).read()
    collapsed = body.models["m"]["collapsed"]
    buckets = _registry_buckets(metrics)
    assert collapsed.requests == len(OBSERVED)
    assert collapsed.p50_s == histogram_quantile(0.5, buckets)
    assert collapsed.p99_s == histogram_quantile(0.99, buckets)
    # by hand: rank 5 of 10 falls in (0.001, 0.0015], which holds observations 5 and 6 (0.0012, 0.0013)
    assert collapsed.p50_s == pytest.approx(0.001 + 0.0005 * (5 - 4) / 2)
    assert collapsed.p99_s == 10.0  # rank 9.9 is in +Inf (12 s): the largest finite bound
    assert body.models["m"]["original"].requests == 0 and body.models["m"]["original"].p50_s is None


def test_a_point_is_the_quantile_of_the_difference_of_two_snapshots() -> None:
    metrics = _metrics()
    now = [100.0]
    live = LiveStats(metrics, clock=lambda: now[0])
    _observe(metrics, OBSERVED)
    assert live.read().models["m"]["collapsed"].series.time == []  # one snapshot: no interval yet
    _observe(metrics, MORE)
    now[0] += STEP_S
    series = live.read().models["m"]["collapsed"].series
    assert series.time == [100.0 + STEP_S]
    assert series.rps == [len(MORE) / STEP_S]
    # MORE alone: 0.00009 in (7e-05, 1e-04], 0.00033 in (3e-04, 5e-04], 0.0008 in (7e-04, 1e-03], 0.003 in (2e-3, 3e-3]
    assert series.p50_s == [pytest.approx(0.0003 + 0.0002 * (2 - 1) / 1)]
    now[0] += STEP_S / 2  # too soon to keep: the series does not grow
    assert len(live.read().models["m"]["collapsed"].series.time) == 1


def _promtool_value(tmp_path: Path, series: dict[str, list[float]], expr: str, at: str, expected: float) -> None:
    """Run ``promtool test rules`` asserting that ``expr`` at ``at`` is exactly ``expected`` (it fails otherwise)."""
    lines = ["rule_files: []", "evaluation_interval: 1m", "tests:", "  - interval: 1m", "    input_series:"]
    for name, values in series.items():
        lines += [f"      - series: '{name}'", f"        values: '{' '.join(repr(v) for v in values)}'"]
    lines += [
        "    promql_expr_test:",
        f"      - expr: '{expr}'",
        f"        eval_time: {at}",
        "        exp_samples:",
        "          - labels: '{}'",
        f"            value: {expected!r}",
    ]
    (tmp_path / "test.yml").write_text("\n".join(lines) + "\n")
    run = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _scraped_series(text: str) -> dict[str, float]:
    """Every bucket sample of the collapsed variant in a /metrics text, in promtool's series notation."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == HISTOGRAM + "_bucket" and s.labels["variant"] == "collapsed":
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                found[f"{s.name}{{{labels}}}"] = s.value
    return found


@pytest.fixture
def promtool() -> None:
    if shutil.which("promtool") is None:
        missing("promtool is not installed (Debian package prometheus)")


@pytest.mark.usefixtures("promtool")
@pytest.mark.parametrize("q", [0.5, 0.99])
def test_promtool_agrees_on_a_scrape_and_on_an_interval(tmp_path: Path, q: float) -> None:
    metrics = _metrics()
    now = [0.0]
    live = LiveStats(metrics, clock=lambda: now[0])
    _observe(metrics, OBSERVED)
    first = _scraped_series(metrics.exposition().decode())
    totals = live.read().models["m"]["collapsed"]
    _observe(metrics, MORE)
    now[0] = STEP_S
    second = _scraped_series(metrics.exposition().decode())
    point = live.read().models["m"]["collapsed"].series
    selector = HISTOGRAM + '_bucket{model="m",variant="collapsed"}'
    cumulative = totals.p50_s if q == 0.5 else totals.p99_s
    assert cumulative is not None
    expr = f"histogram_quantile({q}, sum by (le) ({selector}))"
    _promtool_value(tmp_path, {k: [v] for k, v in first.items()}, expr, "0m", cumulative)
    interval = point.p50_s[0] if q == 0.5 else point.p99_s[0]
    assert interval is not None
    _promtool_value(
        tmp_path,
        {k: [first[k], second[k]] for k in first},
        f"histogram_quantile({q}, sum by (le) ({selector} - {selector} offset 1m))",
        "1m",
        interval,
    )
