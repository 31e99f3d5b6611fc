"""The server's ``/metrics`` as data: samples, histogram deltas between two scrapes, and quantiles.

Quantiles follow Prometheus' ``histogram_quantile``: find the bucket holding the rank and interpolate
linearly inside it; a rank in the ``+Inf`` bucket answers the largest finite bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Histogram", "Scrape", "histogram_quantile", "parse_metrics"]

LabelSet = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """Every sample of one ``/metrics`` answer, keyed by sample name and label set."""

    samples: Mapping[tuple[str, LabelSet], float]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` whose labels include ``labels`` (summed if several match), or None."""
        found = [v for (n, ls), v in self.samples.items() if n == name and set(labels.items()) <= ls]
        return sum(found) if found else None

    def histogram(self, name: str, **labels: str) -> Histogram | None:
        """Cumulative buckets of histogram ``name`` (summed over series matching ``labels``), or None."""
        buckets: dict[float, float] = {}
        for (n, ls), v in self.samples.items():
            if n != f"{name}_bucket" or not set(labels.items()) <= ls:
                continue
            le = float(dict(ls)["le"])
            buckets[le] = buckets.get(le, 0.0) + v
        if not buckets:
            return None
        total = self.value(f"{name}_sum", **labels) or 0.0
        return Histogram(bounds=tuple(sorted(buckets)), counts=tuple(buckets[b] for b in sorted(buckets)), total=total)


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (the last bound is ``+Inf``) and the sum of observations."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total: float  # the ``_sum`` sample

    @property
    def count(self) -> float:
        """Number of observations."""
        return self.counts[-1] if self.counts else 0.0

    def minus(self, earlier: Histogram | None) -> Histogram:
        """Observations made since ``earlier`` (a scrape of the same series), bucket by bucket."""
        if earlier is None:
            return self
        if earlier.bounds != self.bounds:
            raise ValueError(f"bucket bounds changed between scrapes: {earlier.bounds} -> {self.bounds}")
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        return Histogram(bounds=self.bounds, counts=counts, total=self.total - earlier.total)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) of the observations; see :func:`histogram_quantile`."""
        return histogram_quantile(q, self.bounds, self.counts)

    def mean(self) -> float:
        """Mean observation, or NaN without observations."""
        return self.total / self.count if self.count else math.nan


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: tuple[float, ...]) -> float:
    """Prometheus' ``histogram_quantile`` on cumulative bucket counts.

    Args:
        q: quantile in [0, 1].
        bounds: upper bounds of the buckets, ascending, the last one ``+Inf``.
        counts: cumulative counts per bucket.

    Returns:
        The interpolated quantile; NaN when there are no observations.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    if not bounds or bounds[-1] != math.inf:
        raise ValueError(f"the last bucket bound must be +Inf, got {bounds[-1:] or 'no buckets'}")
    total = counts[-1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(bounds) - 1:
        return bounds[-2] if len(bounds) > 1 else math.nan
    lower = bounds[index - 1] if index > 0 else 0.0
    below = counts[index - 1] if index > 0 else 0.0
    in_bucket = counts[index] - below
    if in_bucket <= 0:
        return bounds[index]
    return lower + (bounds[index] - lower) * (rank - below) / in_bucket


def parse_metrics(text: str) -> Scrape:
    """Parse a Prometheus text exposition into a :class:`Scrape`."""
    samples: dict[tuple[str, LabelSet], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return Scrape(samples=samples)
