"""What every scenario shares: the server under test, the engine, the images, warm-up and the ceiling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from loadtest.engines import Engine, LoadSpec
from loadtest.measure import Measurement, measure, scrape
from loadtest.targets import Target, healthz_target, predict_target

__all__ = ["Context", "variant_targets"]

WARMUP_REQUESTS = 40
"""Requests sent (and not recorded) before each measured run, to open connections and warm caches."""


@dataclass
class Context:
    """The server under test and how load is sent to it."""

    base_url: str
    engine: Engine
    images: list[bytes]
    timeout: float = 30.0  # seconds per request
    memory_reader: Callable[[], float | None] | None = None  # the server's RSS when /metrics lacks it
    log: Callable[[str], None] = print
    measurements: list[Measurement] = field(default_factory=list)  # every run, in order, for the report
    memory_source: str = "not read"  # where the last resident-memory figure came from

    def run(self, spec: LoadSpec, name: str, *, model: str | None = None, warmup: bool = True) -> Measurement:
        """Warm up (unrecorded), then measure ``spec``; the measurement is kept for the report."""
        if warmup:
            count = max(WARMUP_REQUESTS, spec.concurrency)
            self.engine.run(LoadSpec(spec.targets, spec.concurrency, count, 2.0, timeout=spec.timeout))
        result = measure(self.engine, spec, base_url=self.base_url, name=name, model=model)
        self.measurements.append(result)
        self.log(_one_line(result))
        return result

    def ceiling(self, concurrency: int, *, requests: int, duration: float) -> Measurement:
        """The engine's own ceiling: ``/healthz`` through the same engine at ``concurrency``."""
        spec = LoadSpec((healthz_target(self.base_url),), concurrency, requests, duration, timeout=self.timeout)
        return self.run(spec, f"healthz c{concurrency}")

    def resident_memory(self) -> float | None:
        """The server's resident memory: ``process_resident_memory_bytes`` from /metrics, else the reader."""
        metrics = scrape(self.base_url)
        value = metrics.value("process_resident_memory_bytes") if metrics else None
        self.memory_source = "process_resident_memory_bytes"
        if value is None and self.memory_reader is not None:
            value, self.memory_source = self.memory_reader(), "/proc/PID/status VmRSS of the spawned server"
        return value


def variant_targets(ctx: Context, model: str, variant: str) -> tuple[Target, ...]:
    """Targets for ``variant`` (``collapsed``, ``original``, or ``both`` interleaved) of ``model``."""
    variants = ("collapsed", "original") if variant == "both" else (variant,)
    return tuple(predict_target(ctx.base_url, model, v, ctx.images) for v in variants)


def _one_line(m: Measurement) -> str:
    parts = []
    for label, s in m.summaries().items():
        lat = s["latency_s"]
        parts.append(
            f"{label}: {s['ok_throughput_rps']:.0f} ok/s p50 {lat['p50'] * 1e3:.2f} ms p99 {lat['p99'] * 1e3:.2f} ms "
            f"statuses {s['statuses']}"
        )
    return f"[{m.result.engine}] {m.name}: " + "; ".join(parts)
