"""Per-request records and their summary: percentiles, throughput and errors by status."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PERCENTILES", "RequestRecord", "Summary", "percentile", "summarize"]

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)
"""Percentiles every summary reports, besides the maximum."""

TRANSPORT_ERROR = 0
"""Status recorded for a request that got no HTTP answer (connection error, client timeout)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it."""

    label: str  # what was asked: "collapsed", "original", "healthz", ...
    start: float  # seconds from the start of the run to the (scheduled) send
    latency: float  # seconds from the (scheduled) send to the last byte of the answer
    status: int  # HTTP status, or TRANSPORT_ERROR when there was no answer
    retry_after: str | None = None  # the Retry-After header, when the engine can see it


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` by linear interpolation between order statistics.

    Same definition as ``numpy.percentile(values, q)`` (method "linear").

    Args:
        values: the sample, in any order.
        q: percentile in [0, 100].

    Returns:
        The percentile, or NaN for an empty sample.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Summary:
    """Client-side figures of a set of requests (latencies in seconds)."""

    requests: int
    ok: int
    elapsed: float  # seconds from the first send to the last answer
    throughput: float  # answered requests (any status) per second over ``elapsed``
    ok_throughput: float  # 200 answers per second
    latency: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max, mean of 200 answers
    latency_all: dict[str, float] = field(default_factory=dict)  # the same over every answer
    statuses: dict[str, int] = field(default_factory=dict)  # status code (as text) -> count

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "requests": self.requests,
            "ok": self.ok,
            "elapsed_s": self.elapsed,
            "throughput_rps": self.throughput,
            "ok_throughput_rps": self.ok_throughput,
            "latency_s": self.latency,
            "latency_all_s": self.latency_all,
            "statuses": self.statuses,
        }


def _latency_figures(latencies: Sequence[float]) -> dict[str, float]:
    figures = {f"p{q:g}": percentile(latencies, q) for q in PERCENTILES}
    figures["max"] = max(latencies) if latencies else math.nan
    figures["mean"] = sum(latencies) / len(latencies) if latencies else math.nan
    return figures


def summarize(records: Iterable[RequestRecord]) -> Summary:
    """Summarise ``records``: latency percentiles of the 200 answers, throughput, statuses.

    Throughput counts answered requests over the span from the first send to the last answer, so a
    run that waited for stragglers is not flattered.
    """
    records = list(records)
    if not records:
        return Summary(requests=0, ok=0, elapsed=0.0, throughput=0.0, ok_throughput=0.0)
    ok = [r.latency for r in records if r.status == 200]
    answered = [r for r in records if r.status != TRANSPORT_ERROR]
    elapsed = max(r.start + r.latency for r in records) - min(r.start for r in records)
    statuses = Counter(str(r.status) for r in records)
    return Summary(
        requests=len(records),
        ok=len(ok),
        elapsed=elapsed,
        throughput=len(answered) / elapsed if elapsed > 0 else math.nan,
        ok_throughput=len(ok) / elapsed if elapsed > 0 else math.nan,
        latency=_latency_figures(ok),
        latency_all=_latency_figures([r.latency for r in records]),
        statuses=dict(sorted(statuses.items())),
    )
