"""Scenario: memory per worker. foldserve at each worker count in turn: PSS of every process, and what a worker adds.

PSS (proportional set size) divides each shared page between the processes that share it, so the PSS of the
supervisor and its workers adds up to what the server really holds, where RSS would count the pages shared
after the fork once per worker. Each count gets its own server: started, waited for until every worker has
loaded every model, measured, loaded for a few seconds, measured again, stopped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loadtest.engines import Engine, LoadSpec
from loadtest.measure import scrape
from loadtest.proctree import tree_memory
from loadtest.server import ServerProcess, wait_until_all_ready
from loadtest.stats import summarize
from loadtest.targets import VARIANTS, predict_target

__all__ = ["MAX_SECOND_WORKER_PSS", "pss_added", "run_memory", "second_worker_aim"]

MAX_SECOND_WORKER_PSS = 300 * 2**20
"""The issue's aim: going from one worker to two adds at most this much PSS (bytes)."""


def pss_added(totals: Mapping[int, float]) -> list[dict[str, Any]]:
    """PSS added per extra worker between consecutive worker counts: ``(total(b) - total(a)) / (b - a)``.

    Args:
        totals: total PSS in bytes per worker count.
    """
    steps = []
    for a, b in itertools.pairwise(sorted(totals)):
        added = totals[b] - totals[a]
        steps.append({"from": a, "to": b, "added_bytes": added, "per_worker_bytes": added / (b - a)})
    return steps


def second_worker_aim(totals: Mapping[int, float]) -> dict[str, Any]:
    """The aim "the second worker adds at most 300 MiB of PSS"; ``met`` None unless counts 1 and 2 were run."""
    if 1 not in totals or 2 not in totals:
        return {"added_bytes": None, "bound_bytes": MAX_SECOND_WORKER_PSS, "met": None}
    added = totals[2] - totals[1]
    return {"added_bytes": added, "bound_bytes": MAX_SECOND_WORKER_PSS, "met": added <= MAX_SECOND_WORKER_PSS}


def _total_pss(processes: list[dict[str, Any]]) -> float | None:
    values = [p["pss_bytes"] for p in processes]
    return None if not values or None in values else float(sum(values))


def _load(
    engine: Engine, base_url: str, models: list[str], images: list[bytes], bounds: tuple[int, float, int]
) -> dict[str, Any]:
    concurrency, duration, requests = bounds
    out = {}
    for model in models:
        for variant in VARIANTS:
            spec = LoadSpec((predict_target(base_url, model, variant, images),), concurrency, requests, duration)
            summary = summarize(engine.run(spec).records)
            out[f"{model} {variant}"] = {"requests": summary.requests, "ok": summary.ok, "statuses": summary.statuses}
    return out


def run_memory(
    store: Path,
    workers: list[int],
    engine: Engine,
    images: list[bytes],
    *,
    models: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    concurrency: int = 8,
    duration: float = 2.0,
    requests: int = 5000,
    out: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start foldserve at each worker count in turn; PSS per process after start-up and after a short load.

    Args:
        models: the models loaded (closed loop, each variant, ``concurrency`` clients, at most ``duration`` s and
            ``requests`` requests); None: every model the server lists.
        env: extra ``FOLDSERVE_*`` settings (``FOLDSERVE_WORKERS`` is set per count).
    """
    runs: dict[int, dict[str, Any]] = {}
    for count in workers:
        settings = {**(env or {}), "FOLDSERVE_WORKERS": str(count)}
        log_path = out / f"server-w{count}.log" if out else None
        with ServerProcess(store, env=settings, log_path=log_path, ready_timeout=300.0) as server:
            assert server.pid is not None
            status = wait_until_all_ready(server.base_url, count)
            after_ready = [m.to_dict() for m in tree_memory(server.pid)]
            loaded = models or sorted(m for m, s in status.items() if s == "ready")
            load = _load(engine, server.base_url, loaded, images, (concurrency, duration, requests))
            after_load = [m.to_dict() for m in tree_memory(server.pid)]
            metrics = scrape(server.base_url)
        reported = {m: metrics.value("foldserve_memory_bytes", measure=m) if metrics else None for m in ("rss", "pss")}
        runs[count] = {
            "workers": count,
            "models": status,
            "after_ready": after_ready,
            "after_load": after_load,
            "total_pss_after_ready_bytes": _total_pss(after_ready),
            "total_pss_after_load_bytes": _total_pss(after_load),
            "foldserve_memory_bytes": reported,  # the workers' own figure (refreshed every few seconds)
            "load": load,
        }
        log(_one_line(runs[count]))
    totals = {c: r["total_pss_after_load_bytes"] for c, r in runs.items() if r["total_pss_after_load_bytes"]}
    return {
        "runs": list(runs.values()),
        "added_after_load": pss_added(totals),
        "second_worker": second_worker_aim(totals),
    }


def _one_line(run: dict[str, Any]) -> str:
    per = ", ".join(f"{p['role']} {p['pid']}: {(p['pss_bytes'] or 0) / 2**20:.0f}" for p in run["after_load"])
    total = run["total_pss_after_load_bytes"] or 0.0
    return f"workers {run['workers']}: total PSS after load {total / 2**20:.0f} MiB ({per} MiB)"
