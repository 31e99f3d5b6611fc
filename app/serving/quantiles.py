"""Quantiles of a classic Prometheus histogram, computed as PromQL's ``histogram_quantile`` computes them.

A port of ``bucketQuantile`` in Prometheus's ``promql/quantile.go`` (2.x and 3.x agree for classic histograms):
buckets sorted by upper bound, the ``+Inf`` bucket required, counts forced monotonic, then linear interpolation
inside the bucket where the rank falls, the first bucket starting at 0; a rank in the ``+Inf`` bucket answers the
largest finite bound. ``tests/serving/test_quantiles.py`` checks it against hand-computed values and against
``promtool`` evaluating ``histogram_quantile`` on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["histogram_quantile"]


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The ``q``-quantile of cumulative ``(upper bound, count)`` buckets, NaN where PromQL would give NaN.

    Args:
        q: the quantile, 0 to 1 (below 0: -inf, above 1: +inf, as PromQL).
        buckets: cumulative counts by upper bound (``le``), in any order, the ``+Inf`` bucket included.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = _coalesced(sorted(buckets))
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    counts = _monotonic([count for _, count in ordered])
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # sort.Search over all but the +Inf bucket: the first whose count reaches the rank, else the +Inf bucket
    b = next((i for i, count in enumerate(counts[:-1]) if count >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:  # q = 0 over an empty first bucket: Go's 0/0, NaN
        return math.nan
    return start + (end - start) * (rank / count)


def _coalesced(ordered: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Buckets of equal upper bound added together (series that differ in another label, summed by ``le``)."""
    merged: list[tuple[float, float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1] = (bound, merged[-1][1] + count)
        else:
            merged.append((bound, count))
    return merged


def _monotonic(counts: list[float]) -> list[float]:
    """Counts never falling, as Prometheus forces them (a scrape between two bucket increments can dip)."""
    fixed, highest = [], -math.inf
    for count in counts:
        highest = max(highest, count)
        fixed.append(highest)
    return fixed
