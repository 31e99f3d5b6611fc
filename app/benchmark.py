"""Timing forward passes with care: warm-up first, then the median of many runs at a stated thread count.

Used by ``python -m app bench``, by the service to measure the speedup at load, and by the reproduction
report. Variants that are compared are timed in interleaved rounds, so that a change in the machine's load
during the measurement falls on all of them alike and their ratio stays honest. Timings come from
``torch.utils.benchmark.Timer``, which synchronises CUDA and fixes the thread count while it measures.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" notice on import
from torch.utils import benchmark  # noqa: E402

__all__ = ["compare_forward", "time_forward"]


@torch.inference_mode()
def compare_forward(
    modules: Mapping[str, nn.Module],
    x: torch.Tensor,
    *,
    warmup: int = 3,
    rounds: int = 15,
    block_seconds: float = 0.05,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Time several modules on the same input in interleaved rounds.

    Args:
        modules: name -> module in eval mode, on ``x``'s device.
        x: the input batch.
        warmup: untimed calls of each module first (caches, lazy initialisation, cuDNN autotuning).
        rounds: timed rounds; each round times one block of calls of every module in turn.
        block_seconds: least time of one block (several calls of a fast module make one block).
        threads: intra-op threads for the measurement; default: torch's current setting.

    Returns:
        Per name: ``median_s``, ``p10_s``, ``p90_s`` (seconds per call over the rounds), ``runs`` (rounds),
        ``calls`` (timed calls in all), ``batch_size`` and ``threads``.
    """
    threads = threads or torch.get_num_threads()
    timers = {}
    for name, module in modules.items():
        for _ in range(warmup):
            module(x)
        timers[name] = benchmark.Timer(stmt="module(x)", globals={"module": module, "x": x}, num_threads=threads)
    times: dict[str, list[float]] = {name: [] for name in modules}
    calls = dict.fromkeys(modules, 0)
    for _ in range(rounds):
        for name, timer in timers.items():
            m = timer.blocked_autorange(min_run_time=block_seconds)
            times[name].append(statistics.median(m.times))
            calls[name] += len(m.raw_times) * m.number_per_run
    return {name: _summary(times[name], calls[name], int(x.shape[0]), threads) for name in modules}


def time_forward(module: nn.Module, x: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
    """Median, p10 and p90 seconds per call of ``module(x)``; arguments as :func:`compare_forward`."""
    return compare_forward({"module": module}, x, **kwargs)["module"]


def _summary(times: list[float], calls: int, batch_size: int, threads: int) -> dict[str, Any]:
    ordered = sorted(times)
    return {
        "median_s": statistics.median(ordered),
        "p10_s": ordered[len(ordered) // 10],
        "p90_s": ordered[(len(ordered) * 9) // 10],
        "runs": len(ordered),
        "calls": calls,
        "batch_size": batch_size,
        "threads": threads,
    }
