"""One measured run: scrape ``/metrics``, send the load, scrape again, and put both sides together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtest.engines import Engine, LoadSpec, RunResult
from loadtest.promtext import Scrape, parse_metrics
from loadtest.stats import RequestRecord, summarize

__all__ = ["SERVER_HISTOGRAMS", "Measurement", "measure", "scrape", "server_side"]

SERVER_HISTOGRAMS: dict[str, str] = {
    "request": "foldserve_request_duration_seconds",
    "decode": "foldserve_decode_duration_seconds",
    "queue": "foldserve_queue_duration_seconds",
    "inference": "foldserve_inference_duration_seconds",  # one observation per batch, not per request
}
"""Server-side latency histograms shown beside the client's figures (names from the agreed metrics)."""

_QUANTILES = (0.5, 0.9, 0.99)


def scrape(base_url: str, timeout: float = 10.0) -> Scrape | None:
    """The server's ``/metrics``, parsed; None when it cannot be read (the report says so)."""
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/metrics", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse_metrics(response.text)


def server_side(before: Scrape | None, after: Scrape | None, model: str, variant: str) -> dict[str, Any]:
    """Server-side figures of ``model``/``variant`` between two scrapes: percentiles per histogram, counters."""
    if before is None or after is None:
        return {"available": False}
    labels = {"model": model, "variant": variant}
    out: dict[str, Any] = {"available": True}
    for key, name in SERVER_HISTOGRAMS.items():
        now = after.histogram(name, **labels)
        if now is None:
            out[key] = None
            continue
        delta = now.minus(before.histogram(name, **labels))
        figures = {f"p{round(q * 100)}": delta.quantile(q) for q in _QUANTILES}
        out[key] = {"count": delta.count, "mean": delta.mean(), **figures}
    batch = after.histogram("foldserve_batch_size", **labels)
    if batch is not None:
        delta = batch.minus(before.histogram("foldserve_batch_size", **labels))
        out["batch_size"] = {"batches": delta.count, "mean": delta.mean(), "p50": delta.quantile(0.5)}
    out["requests_by_status"] = _counter_delta(before, after, "foldserve_requests_total", labels, "status")
    out["rejections_by_reason"] = _counter_delta(before, after, "foldserve_rejections_total", labels, "reason")
    return out


def _counter_delta(before: Scrape, after: Scrape, name: str, labels: dict[str, str], by: str) -> dict[str, float]:
    keys = {dict(ls).get(by) for (n, ls), _ in after.samples.items() if n == name and set(labels.items()) <= ls}
    deltas = {}
    for key in sorted(k for k in keys if k is not None):
        now = after.value(name, **labels, **{by: key}) or 0.0
        deltas[key] = now - (before.value(name, **labels, **{by: key}) or 0.0)
    return {k: v for k, v in deltas.items() if v}


@dataclass
class Measurement:
    """A run, its client-side summary per label, and the server's figures for the same interval."""

    name: str  # what the run measured, e.g. "linear-resnet18-mnist collapsed c16"
    result: RunResult
    model: str | None
    server: dict[str, Any] = field(default_factory=dict)  # variant -> server_side(...)
    memory_bytes: tuple[float | None, float | None] = (None, None)  # process_resident_memory_bytes before, after

    @property
    def records(self) -> list[RequestRecord]:
        """Every request of the run."""
        return self.result.records

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Client-side summary per target label."""
        labels = dict.fromkeys(t.label for t in self.result.spec.targets)
        return {label: summarize(r for r in self.records if r.label == label).to_dict() for label in labels}

    def to_dict(self) -> dict[str, Any]:
        """Every figure, JSON-ready (per-request records excluded; see the report for those)."""
        return {
            "name": self.name,
            "engine": self.result.engine,
            "model": self.model,
            "spec": self.result.spec.to_dict(),
            "wall_s": self.result.wall,
            "stopped_by": self.result.stopped_by,
            "notes": self.result.notes,
            "client": self.summaries(),
            "server": self.server,
            "resident_memory_bytes": {"before": self.memory_bytes[0], "after": self.memory_bytes[1]},
        }


def measure(engine: Engine, spec: LoadSpec, *, base_url: str, name: str, model: str | None = None) -> Measurement:
    """Run ``spec`` through ``engine`` between two scrapes of ``base_url``'s ``/metrics``."""
    before = scrape(base_url)
    result = engine.run(spec)
    after = scrape(base_url)
    server = {}
    if model is not None:
        server = {t.label: server_side(before, after, model, t.label) for t in spec.targets if t.label != "healthz"}
    memory = tuple(s.value("process_resident_memory_bytes") if s else None for s in (before, after))
    return Measurement(name=name, result=result, model=model, server=server, memory_bytes=(memory[0], memory[1]))
