"""Timing forward passes with care: warm-up first, then the median of many runs at a stated thread count.

Used by ``python -m app bench``, by the service to measure the speedup at load, and by the reproduction
report. Variants that are compared are timed in interleaved rounds, so that a change in the machine's load
during the measurement falls on all of them alike and their ratio stays honest. Each timed block is bracketed
by a synchronisation of the input's device (CUDA runs asynchronously) and runs at a fixed thread count.

Not ``torch.utils.benchmark``: importing it asks CUDA for its devices (through ``torch.utils.cpp_extension``),
which makes every process forked afterwards unable to use CUDA (PyTorch's "Cannot re-initialize CUDA in forked
subprocess"), and the server forks its workers after importing this module. Its timer also synchronises
every accelerator present, even around a pass on the CPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

Forward = Callable[[torch.Tensor], Any]
"""What is timed: a module, a runtime, or any callable of one batch."""

MAX_CALLS_PER_BLOCK = 1_000_000

__all__ = ["compare_forward"]


@torch.inference_mode()
def compare_forward(
    modules: Mapping[str, Forward],
    x: torch.Tensor,
    *,
    warmup: int = 3,
    rounds: int = 15,
    block_seconds: float = 0.05,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Time several modules on the same input in interleaved rounds.

    Args:
        modules: name -> module in eval mode on ``x``'s device, or any callable of ``x``.
        x: the input batch.
        warmup: untimed calls of each module first (caches, lazy initialisation, cuDNN autotuning).
        rounds: timed rounds; each round times one block of calls of every module in turn.
        block_seconds: least time of one block (several calls of a fast module make one block).
        threads: intra-op threads for the measurement; default: torch's current setting.

    Returns:
        Per name: ``median_s``, ``min_s``, ``p10_s``, ``p90_s`` (seconds per call over the rounds), ``runs`` (rounds),
        ``calls`` (timed calls in all), ``batch_size`` and ``threads``.
    """
    threads = threads or torch.get_num_threads()
    sync = _synchronizer(x.device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sizes = {}
        for name, module in modules.items():
            for _ in range(warmup):
                module(x)
            sizes[name] = _calls_per_block(module, x, block_seconds, sync)
        times: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(rounds):
            for name, module in modules.items():
                times[name].append(_time_block(module, x, sizes[name], sync) / sizes[name])
    finally:
        torch.set_num_threads(previous)
    return {name: _summary(times[name], sizes[name] * rounds, int(x.shape[0]), threads) for name in modules}


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the work queued on ``device``: CUDA's synchronize there, nothing on the CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _time_block(module: Forward, x: torch.Tensor, calls: int, sync: Callable[[], None]) -> float:
    """Seconds that ``calls`` calls of ``module(x)`` take, from an idle device to an idle device."""
    sync()
    started = time.perf_counter()
    for _ in range(calls):
        module(x)
    sync()
    return time.perf_counter() - started


def _calls_per_block(module: Forward, x: torch.Tensor, block_seconds: float, sync: Callable[[], None]) -> int:
    """The fewest calls of ``module(x)`` that take at least ``block_seconds`` (found by growing the count at most
    tenfold a step, so one slow first guess cannot run for long); 1 when one call is enough."""
    calls = 1
    while calls < MAX_CALLS_PER_BLOCK:
        took = _time_block(module, x, calls, sync)
        if took >= block_seconds:
            break
        wanted = int(calls * block_seconds / max(took, 1e-9) * 1.2) + 1
        calls = min(max(wanted, calls + 1), calls * 10, MAX_CALLS_PER_BLOCK)
    return calls


def _summary(times: list[float], calls: int, batch_size: int, threads: int) -> dict[str, Any]:
    ordered = sorted(times)
    return {
        "median_s": statistics.median(ordered),
        "min_s": ordered[0],
        "p10_s": ordered[len(ordered) // 10],
        "p90_s": ordered[(len(ordered) * 9) // 10],
        "runs": len(ordered),
        "calls": calls,
        "batch_size": batch_size,
        "threads": threads,
    }
