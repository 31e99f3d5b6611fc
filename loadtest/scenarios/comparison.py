"""Scenario 1: each model, both variants, closed loop at several concurrencies, beside the /healthz floor."""

from __future__ import annotations

import math
from typing import Any

from loadtest.engines import LoadSpec
from loadtest.measure import Measurement
from loadtest.scenarios.common import Context, variant_targets
from loadtest.targets import VARIANTS

__all__ = ["CONCURRENCIES", "aims", "run_comparison"]

CONCURRENCIES: tuple[int, ...] = (1, 4, 16, 64)
"""Closed-loop client counts the comparison runs at."""


def run_comparison(
    ctx: Context,
    models: list[str],
    *,
    concurrencies: tuple[int, ...] = CONCURRENCIES,
    requests: int = 2000,
    duration: float = 8.0,
) -> dict[str, Any]:
    """Measure ``/healthz`` and every model's variants at every concurrency, concurrency by concurrency.

    Runs at one concurrency follow each other closely, so a machine busy with other work disturbs the
    runs that are compared with each other about equally.

    Returns:
        ``{"healthz": {c: figures}, "models": {model: {variant: {c: figures}}}, "aims": {model: ...}}``.
    """
    healthz: dict[int, Measurement] = {}
    runs: dict[str, dict[str, dict[int, Measurement]]] = {m: {v: {} for v in VARIANTS} for m in models}
    for c in concurrencies:
        healthz[c] = ctx.ceiling(c, requests=requests, duration=duration)
        for model in models:
            for variant in VARIANTS:
                spec = LoadSpec(variant_targets(ctx, model, variant), c, requests, duration, timeout=ctx.timeout)
                runs[model][variant][c] = ctx.run(spec, f"{model} {variant} c{c}", model=model)
    return {
        "concurrencies": list(concurrencies),
        "healthz": {c: m.to_dict() for c, m in healthz.items()},
        "models": {
            m: {v: {c: r.to_dict() for c, r in by_c.items()} for v, by_c in rv.items()} for m, rv in runs.items()
        },
        "aims": {m: aims(healthz, runs[m]) for m in models},
    }


def aims(healthz: dict[int, Measurement], runs: dict[str, dict[int, Measurement]]) -> dict[str, Any]:
    """The issue's two aims for one model, from runs of the same session.

    - throughput: collapsed / original answers per second at concurrency 16 (aim: >= 3);
    - latency: collapsed p50 at concurrency 1 against 1.5 x (``/healthz`` p50 + server-side decode p50).
    """
    out: dict[str, Any] = {}
    if 16 in runs["collapsed"] and 16 in runs["original"]:
        collapsed, original = (_ok_rps(runs[v][16], v) for v in VARIANTS)
        ratio = collapsed / original if original > 0 else math.nan
        out["throughput_c16"] = {
            "collapsed_rps": collapsed,
            "original_rps": original,
            "ratio": ratio,
            "met": ratio >= 3,
        }
    if 1 in runs["collapsed"] and 1 in healthz:
        run = runs["collapsed"][1]
        p50 = run.summaries()["collapsed"]["latency_s"]["p50"]
        floor = healthz[1].summaries()["healthz"]["latency_s"]["p50"]
        decode = (run.server.get("collapsed", {}).get("decode") or {}).get("p50", math.nan)
        bound = 1.5 * (floor + decode)
        out["latency_c1"] = {
            "collapsed_p50_s": p50,
            "healthz_p50_s": floor,
            "decode_p50_s": decode,
            "bound_s": bound,
            "met": p50 <= bound,
        }
    return out


def _ok_rps(run: Measurement, label: str) -> float:
    return float(run.summaries()[label]["ok_throughput_rps"])
