"""``GET /ui/stats``: p50, p99 and answers per second of each model's variants over the last minutes.

Read from the server's own ``foldserve_request_duration_seconds`` histogram, every protocol summed, from the same
collection a ``/metrics`` scrape serialises (all workers together in multiprocess mode). Each call takes a
snapshot of the cumulative buckets; one is kept every :data:`STEP_S` for :data:`WINDOW_S`, so nothing is
sampled while nobody watches. A point of the series is the difference of two consecutive snapshots, and its
quantiles are :func:`~app.serving.quantiles.histogram_quantile` of that difference: what PromQL gives for
``histogram_quantile(q, sum by (le) (x_bucket - x_bucket offset STEP))`` at the later snapshot.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from pydantic import BaseModel, Field

from app.serving.metrics import VARIANTS, ServingMetrics
from app.serving.quantiles import histogram_quantile

__all__ = ["HISTOGRAM", "QUANTILES", "STEP_S", "WINDOW_S", "LiveStats", "LiveStatsBody"]

HISTOGRAM = "foldserve_request_duration_seconds"
"""The histogram the page charts: the whole handling of an inference request."""

QUANTILES = (0.5, 0.99)
STEP_S = 2.0
"""Least time between two kept snapshots: the page polls every 2 s."""
WINDOW_S = 300.0
"""How far back the series reach."""

Buckets = dict[float, float]  # upper bound (le) -> cumulative count
Key = tuple[str, str]  # model, variant


class Series(BaseModel):
    """One variant's points, oldest first: each over the interval that ends at its time."""

    time: list[float] = Field(description="Unix time of each point (the later snapshot of its interval)")
    rps: list[float] = Field(description="answers per second over the interval")
    p50_s: list[float | None] = Field(description="median latency in seconds over the interval; null: no answers")
    p99_s: list[float | None] = Field(description="99th percentile latency in seconds; null: no answers")


class VariantStats(BaseModel):
    requests: int = Field(description="answers observed since the start (every protocol)")
    p50_s: float | None = Field(description="median latency since the start, seconds")
    p99_s: float | None = Field(description="99th percentile latency since the start, seconds")
    series: Series


class LiveStatsBody(BaseModel):
    """What the comparison page charts."""

    histogram: str = HISTOGRAM
    time: float = Field(description="Unix time of this answer's snapshot")
    step_s: float = STEP_S
    window_s: float = WINDOW_S
    models: dict[str, dict[str, VariantStats]] = Field(description="model -> variant -> its latency and rate")


@dataclass(frozen=True)
class _Snapshot:
    time: float
    buckets: dict[Key, Buckets]


class LiveStats:
    """The snapshots of one process, and the body built from them.

    Args:
        metrics: whose histogram is read.
        clock: Unix time (a fake one in tests).
    """

    def __init__(self, metrics: ServingMetrics, clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._clock = clock
        self._kept: deque[_Snapshot] = deque()

    def read(self) -> LiveStatsBody:
        """Take a snapshot, keep it if the last kept one is :data:`STEP_S` old, and describe the window."""
        now = _Snapshot(self._clock(), self.buckets())
        if not self._kept or now.time - self._kept[-1].time >= STEP_S:
            self._kept.append(now)
        while now.time - self._kept[0].time > WINDOW_S:
            self._kept.popleft()
        snapshots = list(self._kept)
        models: dict[str, dict[str, VariantStats]] = {}
        for key, buckets in now.buckets.items():
            totals = [_quantile(q, buckets) for q in QUANTILES]
            models.setdefault(key[0], {})[key[1]] = VariantStats(
                requests=int(buckets.get(math.inf, 0)), p50_s=totals[0], p99_s=totals[1], series=_series(key, snapshots)
            )
        return LiveStatsBody(time=now.time, models=models)

    def buckets(self) -> dict[Key, Buckets]:
        """Cumulative counts by model, variant and upper bound, summed over protocols, from one collection."""
        found: dict[Key, Buckets] = {}
        for family in self._metrics.families():
            if family.name != HISTOGRAM:
                continue
            for sample in family.samples:
                model, variant = sample.labels.get("model", ""), sample.labels.get("variant", "")
                if sample.name != HISTOGRAM + "_bucket" or not model or variant not in VARIANTS:
                    continue
                counts = found.setdefault((model, variant), {})
                bound = float(sample.labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
        return found


def _series(key: Key, snapshots: list[_Snapshot]) -> Series:
    series = Series(time=[], rps=[], p50_s=[], p99_s=[])
    for before, after in pairwise(snapshots):
        if key not in after.buckets:
            continue
        old = before.buckets.get(key, {})
        # a counter that fell was reset (the model loaded again): the interval counts from zero, as rate() does
        reset = any(count < old.get(bound, 0.0) for bound, count in after.buckets[key].items())
        delta = {bound: count - (0.0 if reset else old.get(bound, 0.0)) for bound, count in after.buckets[key].items()}
        series.time.append(after.time)
        series.rps.append(delta.get(math.inf, 0.0) / (after.time - before.time))
        series.p50_s.append(_quantile(QUANTILES[0], delta))
        series.p99_s.append(_quantile(QUANTILES[1], delta))
    return series


def _quantile(q: float, buckets: Buckets) -> float | None:
    value = histogram_quantile(q, buckets.items())
    return value if math.isfinite(value) else None
