"""Scenario 2: offered load at a multiple of the measured capacity, open loop.

Passes when only 200 and 503 come back, every 503 carries Retry-After, accepted requests finish
within the server's request deadline, and latency is back to normal soon after the load stops.
"""

from __future__ import annotations

import time
from typing import Any

from loadtest.engines import LoadSpec
from loadtest.scenarios.common import Context, variant_targets
from loadtest.scenarios.probe import Prober, normal_latency, recovery_seconds
from loadtest.stats import RequestRecord, percentile

__all__ = ["measure_capacity", "run_overload"]

HTTP_ALLOWANCE = 0.25
"""Seconds allowed on top of the server's deadline for the HTTP round trip of an accepted request."""


def measure_capacity(ctx: Context, model: str, variant: str, *, concurrency: int = 16, duration: float = 5.0) -> float:
    """Answers per second (200 only) of a closed-loop run at ``concurrency``: the service's capacity."""
    spec = LoadSpec(variant_targets(ctx, model, variant), concurrency, 100_000, duration, timeout=ctx.timeout)
    run = ctx.run(spec, f"capacity {model} {variant} c{concurrency}", model=model)
    capacity = sum(s["ok_throughput_rps"] for s in run.summaries().values())
    if not capacity > 0:
        statuses = {k: v["statuses"] for k, v in run.summaries().items()}
        raise RuntimeError(f"no request succeeded while measuring capacity of {model} {variant}: {statuses}")
    return float(capacity)


def run_overload(
    ctx: Context,
    model: str,
    variant: str,
    *,
    factor: float = 4.0,
    duration: float = 10.0,
    deadline: float = 10.0,
    concurrency: int = 1024,
    recovery_window: float = 10.0,
    recovered_within: float = 5.0,
    idle_probing: float = 2.0,
) -> dict[str, Any]:
    """Capacity, then ``factor`` x capacity for ``duration`` s, with a prober watching through and after.

    Args:
        deadline: the server's request deadline (``FOLDSERVE_REQUEST_TIMEOUT_S``).
        concurrency: most requests in flight (httpx connections; hey workers). It must exceed the server's
            queue (``FOLDSERVE_MAX_QUEUE_SIZE``, 256 by default), or the queue never fills and nothing is refused.
        recovery_window: seconds the prober keeps going after the load stops.
        recovered_within: seconds after which latency must be back to normal.
        idle_probing: seconds the prober runs before the load; its answers then define "normal" latency.
    """
    ceiling = ctx.ceiling(16, requests=100_000, duration=3.0)
    baseline = ctx.run(_spec(ctx, model, variant, 1, None, 3.0), f"baseline {model} {variant} c1", model=model)
    capacity = measure_capacity(ctx, model, variant)
    rate = factor * capacity
    targets = variant_targets(ctx, model, variant)
    prober = Prober(targets[0], origin=time.perf_counter(), timeout=ctx.timeout)
    prober.start()
    time.sleep(idle_probing)
    load_start = time.perf_counter() - prober.origin
    spec = _spec(ctx, model, variant, concurrency, rate, duration)
    overload = ctx.run(spec, f"overload {model} {variant} {factor:g}x", model=model, warmup=False)
    load_end = load_start + duration
    time.sleep(max(0.0, load_end + recovery_window - (time.perf_counter() - prober.origin)))
    probes = prober.stop()
    # "normal" comes from the prober's own idle answers: the engine's baseline (hey: no client overhead to
    # speak of) would hold the prober's sequential httpx round trips to a bar they cannot meet even when idle.
    normal = normal_latency(probes, load_start)
    if normal is None:
        idle_p50 = percentile([r.latency for r in baseline.records if r.status == 200], 50)
        normal = max(2.0 * idle_p50, idle_p50 + 0.002)
    checks = _checks(
        overload.records,
        overload.result.engine == "httpx",
        probes,
        deadline,
        load_start,
        load_end,
        normal,
        recovered_within,
    )
    return {
        "model": model,
        "variant": variant,
        "capacity_rps": capacity,
        "offered_rps": rate,
        "sent_rps": len(overload.records) / duration,  # what the engine managed to send; below offered = engine-bound
        "factor": factor,
        "deadline_s": deadline,
        "normal_latency_s": normal,
        "ceiling": ceiling.to_dict(),
        "baseline": baseline.to_dict(),
        "overload": overload.to_dict(),
        "probes": [r.__dict__ for r in probes],
        "load_window_s": [load_start, load_end],
        "checks": checks,
        "passed": all(c["passed"] is not False for c in checks.values()),
    }


def _spec(ctx: Context, model: str, variant: str, concurrency: int, rate: float | None, duration: float) -> LoadSpec:
    count = 100_000 if rate is None else max(1, int(rate * duration) + 1)
    return LoadSpec(variant_targets(ctx, model, variant), concurrency, count, duration, rate=rate, timeout=ctx.timeout)


def _checks(
    load: list[RequestRecord],
    headers_visible: bool,
    probes: list[RequestRecord],
    deadline: float,
    load_start: float,
    load_end: float,
    normal: float,
    recovered_within: float,
) -> dict[str, dict[str, Any]]:
    during = [r for r in probes if load_start <= r.start < load_end]
    statuses = sorted({r.status for r in [*load, *during]})
    # hey cannot see headers: then only the prober's 503s show whether Retry-After is there.
    visible = [*(load if headers_visible else []), *probes]
    rejected = [r for r in visible if r.status == 503]
    missing = sum(1 for r in rejected if not r.retry_after)
    accepted = [r.latency for r in [*load, *during] if r.status == 200]
    slowest = max(accepted) if accepted else None
    recovery = recovery_seconds(probes, load_end, normal)
    return {
        "only_200_and_503": {"statuses": statuses, "passed": set(statuses) <= {200, 503}},
        "retry_after_on_503": {
            "all_503s": sum(1 for r in [*load, *probes] if r.status == 503),
            "checked_503s": len(rejected),
            "missing_header": missing,
            "passed": None if not rejected else missing == 0,
        },
        "accepted_within_deadline": {
            "accepted": len(accepted),
            "slowest_s": slowest,
            "limit_s": deadline + HTTP_ALLOWANCE,
            "passed": slowest is not None and slowest <= deadline + HTTP_ALLOWANCE,
        },
        "recovery": {
            "seconds": recovery,
            "limit_s": recovered_within,
            "passed": recovery is not None and recovery <= recovered_within,
        },
    }
