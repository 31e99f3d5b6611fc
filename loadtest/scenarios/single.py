"""One run of any shape (closed or open loop, one variant or both interleaved), beside the /healthz ceiling."""

from __future__ import annotations

from typing import Any

from loadtest.engines import LoadSpec
from loadtest.scenarios.common import Context, variant_targets

__all__ = ["run_single"]


def run_single(
    ctx: Context,
    model: str,
    variant: str,
    *,
    concurrency: int,
    requests: int,
    duration: float,
    rate: float | None = None,
) -> dict[str, Any]:
    """Measure ``/healthz`` at ``concurrency``, then the model's ``variant`` (or ``both``, interleaved)."""
    ceiling = ctx.ceiling(concurrency, requests=requests, duration=duration)
    spec = LoadSpec(
        variant_targets(ctx, model, variant), concurrency, requests, duration, rate=rate, timeout=ctx.timeout
    )
    mode = "closed" if rate is None else f"open {rate:g} rps"
    run = ctx.run(spec, f"{model} {variant} c{concurrency} {mode}", model=model)
    return {"model": model, "variant": variant, "ceiling": ceiling.to_dict(), "run": run.to_dict()}
