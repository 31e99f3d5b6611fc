"""Scenario 3: a long open-loop run at a fraction of capacity: zero errors, no memory growth after warm-up."""

from __future__ import annotations

import threading
import time
from typing import Any

from loadtest.engines import LoadSpec
from loadtest.scenarios.common import Context, variant_targets
from loadtest.scenarios.overload import measure_capacity

__all__ = ["memory_growth", "run_soak"]

MAX_GROWTH = 0.05
"""Largest resident-memory growth after warm-up, as a fraction of the memory at the end of warm-up."""


def memory_growth(samples: list[tuple[float, float]], warmup: float) -> dict[str, Any]:
    """Growth of resident memory after ``warmup`` seconds: largest later sample over the first one, minus 1.

    Args:
        samples: ``(seconds since start, bytes)`` pairs in time order.
        warmup: seconds discarded at the start.
    """
    after = [(t, b) for t, b in samples if t >= warmup]
    if len(after) < 2:
        return {"samples": len(after), "growth": None, "passed": None}
    reference = after[0][1]
    growth = max(b for _, b in after) / reference - 1.0
    return {
        "samples": len(after),
        "reference_bytes": reference,
        "last_bytes": after[-1][1],
        "max_bytes": max(b for _, b in after),
        "growth": growth,
        "limit": MAX_GROWTH,
        "passed": growth < MAX_GROWTH,
    }


def run_soak(
    ctx: Context,
    model: str,
    variant: str,
    *,
    duration: float = 60.0,
    fraction: float = 0.5,
    warmup: float | None = None,
    sample_every: float = 2.0,
    concurrency: int = 64,
    rate: float | None = None,
) -> dict[str, Any]:
    """Measure capacity (unless ``rate`` is given), then run ``fraction`` of it for ``duration`` seconds.

    Args:
        warmup: seconds whose memory samples are discarded; default a fifth of ``duration``, at least 10 s.
        sample_every: seconds between resident-memory samples.
        concurrency: most requests in flight.
    """
    warmup = max(10.0, duration / 5) if warmup is None else warmup
    ceiling = ctx.ceiling(16, requests=100_000, duration=3.0)
    capacity = measure_capacity(ctx, model, variant) if rate is None else None
    offered = rate if rate is not None else fraction * (capacity or 0.0)
    spec = LoadSpec(
        variant_targets(ctx, model, variant),
        concurrency,
        int(offered * duration) + 1,
        duration,
        rate=offered,
        timeout=ctx.timeout,
    )
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    origin = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            value = ctx.resident_memory()
            if value is not None:
                samples.append((time.perf_counter() - origin, value))
            stop.wait(sample_every)

    sampler = threading.Thread(target=sample, name="loadtest-memory", daemon=True)
    sampler.start()
    try:
        soak = ctx.run(spec, f"soak {model} {variant} {offered:.0f} rps", model=model, warmup=False)
    finally:
        stop.set()
        sampler.join()
    errors = sum(1 for r in soak.records if r.status != 200)
    memory = {**memory_growth(samples, warmup), "source": ctx.memory_source}
    return {
        "model": model,
        "variant": variant,
        "capacity_rps": capacity,
        "offered_rps": offered,
        "duration_s": duration,
        "warmup_s": warmup,
        "ceiling": ceiling.to_dict(),
        "soak": soak.to_dict(),
        "memory_samples": samples,
        "checks": {
            "zero_errors": {"errors": errors, "requests": len(soak.records), "passed": errors == 0},
            "memory_growth": memory,
        },
        "passed": errors == 0 and memory["passed"] is True,
    }
