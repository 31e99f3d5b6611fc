"""Scenario: foldserve against the reference server, side by side in one run, cell by cell.

A cell is one model, variant and concurrency. Within a cell each server gets, in turn, a warm-up and then a
closed-loop run bounded by a request count and a duration, so no two servers are ever under load at once
and servers compared with each other run seconds apart; the server order flips every repetition, so drift
on a shared machine falls on both sides alike. The whole grid is repeated and the report gives medians.

Besides answers per second and client latency, each run reads the CPU time of the server's whole process
tree (supervisor and workers) just before and just after the measured load, and divides it by the answers:
CPU per answer is what a server costs, whatever the load generator managed to send.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadtest.engines import Engine, LoadSpec
from loadtest.measure import scrape, server_side
from loadtest.proctree import tree_cpu_seconds, tree_memory
from loadtest.scenarios.versus_aims import Aim, aims, medians, ratios
from loadtest.stats import summarize
from loadtest.targets import VARIANTS, predict_target

__all__ = ["CONCURRENCIES", "Contender", "Grid", "memory_snapshot", "run_cell", "run_versus"]

CONCURRENCIES: tuple[int, ...] = (1, 16, 64)
"""Closed-loop client counts the versus scenario runs at by default (the aims use 1 and 16)."""


@dataclass(frozen=True)
class Contender:
    """A server under test, and what it was run with."""

    name: str  # "foldserve w1", "foldserve w2", "reference"
    kind: str  # "foldserve" or "reference"
    base_url: str
    pid: int | None  # root of the process tree whose CPU is counted; None: not known (no CPU figures)
    settings: dict[str, Any] = field(default_factory=dict)  # workers, torch threads, env: as run

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"name": self.name, "kind": self.kind, "base_url": self.base_url, "pid": self.pid, **self.settings}


@dataclass(frozen=True)
class Grid:
    """What every cell runs: the load bounds, and the grid's axes."""

    models: tuple[str, ...]
    concurrencies: tuple[int, ...] = CONCURRENCIES
    variants: tuple[str, ...] = VARIANTS
    duration: float = 6.0  # seconds bound of a measured run
    requests: int = 50_000  # request bound of a measured run
    warmup: float = 1.0  # seconds of unrecorded load before each measured run
    repeat: int = 2  # times the whole grid runs
    timeout: float = 30.0  # seconds per request
    aims: tuple[Aim, ...] = ()  # bounds the ratios are checked against (none: the report gives the ratios only)


def run_cell(
    engine: Engine, server: Contender, grid: Grid, model: str, variant: str, concurrency: int, images: list[bytes]
) -> dict[str, Any]:
    """Warm up, then measure one server at one model, variant and concurrency; figures of that one run."""
    targets = (predict_target(server.base_url, model, variant, images),)
    warm_requests = min(grid.requests, max(100, 20 * concurrency))
    engine.run(LoadSpec(targets, concurrency, warm_requests, grid.warmup, timeout=grid.timeout))
    spec = LoadSpec(targets, concurrency, grid.requests, grid.duration, timeout=grid.timeout)
    before = scrape(server.base_url) if server.kind == "foldserve" else None
    cpu_before = tree_cpu_seconds(server.pid) if server.pid else None
    result = engine.run(spec)
    cpu_after = tree_cpu_seconds(server.pid) if server.pid else None
    after = scrape(server.base_url) if server.kind == "foldserve" else None
    summary = summarize(result.records)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "server": server.name,
        "model": model,
        "variant": variant,
        "concurrency": concurrency,
        "requests": summary.requests,
        "ok": summary.ok,
        "non_200": {s: n for s, n in summary.statuses.items() if s != "200"},
        "elapsed_s": summary.elapsed,
        "answers_per_s": summary.ok_throughput,
        "p50_s": summary.latency["p50"],
        "p99_s": summary.latency["p99"],
        "mean_s": summary.latency["mean"],  # finer than hey's 0.1 ms steps: an average of many
        "cpu_s": cpu,
        "cpu_per_answer_s": cpu / summary.ok if cpu is not None and summary.ok else None,
        "stopped_by": result.stopped_by,
        "notes": result.notes,
        "server_side": server_side(before, after, model, variant) if server.kind == "foldserve" else None,
    }


def memory_snapshot(servers: list[Contender]) -> dict[str, list[dict[str, Any]]]:
    """RSS and PSS of every process of each server's tree now (servers without a pid are left out)."""
    return {s.name: [m.to_dict() for m in tree_memory(s.pid)] for s in servers if s.pid}


def run_versus(
    engine: Engine,
    servers: list[Contender],
    grid: Grid,
    images: list[bytes],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the grid ``grid.repeat`` times over ``servers`` (foldserve at one or more settings, and one reference).

    Returns:
        ``cells`` (every run), ``medians`` (per server, model, variant, concurrency), ``ratios`` and ``aims``
        (per foldserve server and model), and ``memory`` (per-process PSS after start-up and after the load).
    """
    references = [s for s in servers if s.kind == "reference"]
    if len(references) != 1:
        raise ValueError(f"versus needs exactly one reference server, got {[s.name for s in references]}")
    reference = references[0]
    memory = {"after_ready": memory_snapshot(servers)}
    cells = []
    started = time.perf_counter()
    for repetition in range(grid.repeat):
        order = servers if repetition % 2 == 0 else servers[::-1]
        for model in grid.models:
            for variant in grid.variants:
                for c in grid.concurrencies:
                    for server in order:
                        cell = run_cell(engine, server, grid, model, variant, c, images)
                        cells.append({**cell, "repetition": repetition})
                        log(_one_line(cell, repetition))
    memory["after_load"] = memory_snapshot(servers)
    med = medians(cells)
    fold = [s.name for s in servers if s is not reference]
    figures = {f: {m: ratios(med, f, reference.name, m) for m in grid.models} for f in fold}
    return {
        "wall_s": time.perf_counter() - started,
        "cells": cells,
        "medians": [{"server": k[0], "model": k[1], "variant": k[2], "concurrency": k[3], **v} for k, v in med.items()],
        "ratios": figures,
        "aims": {f: {m: aims(r, grid.aims) for m, r in by_model.items()} for f, by_model in figures.items()},
        "memory": memory,
    }


def _one_line(cell: dict[str, Any], repetition: int) -> str:
    cpu = "–" if cell["cpu_per_answer_s"] is None else f"{cell['cpu_per_answer_s'] * 1e3:.3f} ms"
    p50, p99 = cell["p50_s"] * 1e3, cell["p99_s"] * 1e3
    return (
        f"[rep {repetition + 1}] {cell['server']:<13} {cell['model']} {cell['variant']:<9} c{cell['concurrency']:<3} "
        f"{cell['answers_per_s'] or 0:8.1f} answers/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  cpu/answer {cpu}  "
        f"non-200 {cell['non_200'] or 0}"
    )
