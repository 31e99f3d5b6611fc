"""The question the paper leaves open: when should the skips be gone, and along which curve?

A small, cheap sweep of ``t0`` (as a fraction of the run) for the linear and cosine schedules, against
two baselines: ``t0 = 0`` (the skips are off from the first step, a plain CNN) and standard skips that
are never removed. Every run uses the same recipe as ``annealed-resnet18-mnist`` at a smaller width
and fewer epochs, on the same data, with each seed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Literal

from app.training.data import Digits
from app.training.loop import train
from app.training.presets import get_preset
from app.training.schedules import SkipSchedule

__all__ = ["SWEEP_T0", "run_sweep", "sweep_grid"]

SWEEP_T0 = (0.25, 0.5, 0.75, 1.0)
"""Fractions of the run at which the skip weight reaches 0."""


def sweep_grid() -> list[tuple[str, SkipSchedule | None]]:
    """(label, schedule) for every sweep point; ``None`` means standard skips, never removed."""
    grid: list[tuple[str, SkipSchedule | None]] = [("standard skips", None)]
    grid.append(("plain CNN (t0 = 0)", SkipSchedule(kind="linear", t0=0.0)))
    for kind in ("linear", "cosine"):
        grid += [(f"{kind}, t0 = {t0:g}", SkipSchedule(kind=kind, t0=t0)) for t0 in SWEEP_T0]
    return grid


def run_sweep(
    data: Digits,
    *,
    epochs: int = 12,
    width: int = 16,
    seeds: tuple[int, ...] = (0, 1),
    device: str = "auto",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train every sweep point with every seed; one result row per run."""
    base = get_preset("annealed-resnet18-mnist")
    rows = []
    for label, schedule in sweep_grid():
        skips: Literal["standard", "annealed"] = "standard" if schedule is None else "annealed"
        arch = replace(base.architecture, width=width, skips=skips)
        for seed in seeds:
            config = replace(base, architecture=arch, epochs=epochs, schedule=schedule, seed=seed)
            started = time.perf_counter()
            result = train(config, data, device=device, progress=progress, verbose=False)
            rows.append(
                {
                    "label": label,
                    "schedule": "none" if schedule is None else schedule.kind,
                    "t0": None if schedule is None else schedule.t0,
                    "seed": seed,
                    "width": width,
                    "epochs": epochs,
                    "test_accuracy": result.test_accuracy,
                    "best_test_accuracy": max(r["test_accuracy"] for r in result.history),
                    "final_train_loss": result.history[-1]["train_loss"],
                    "seconds": time.perf_counter() - started,
                    "device": result.device,
                }
            )
            print(f"sweep {label} seed {seed}: test accuracy {result.test_accuracy:.4f}", flush=True)
    return rows
