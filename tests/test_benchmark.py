"""app.benchmark: interleaved timing rounds, blocks sized to a least duration, the thread count restored."""

from __future__ import annotations

import time

import torch
from torch import nn

from app.benchmark import compare_forward


class Sleeper(nn.Module):
    """A module whose call takes at least ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


def test_each_module_is_timed_per_call_in_blocks_of_at_least_block_seconds() -> None:
    before = torch.get_num_threads()
    modules = {"fast": nn.Identity(), "slow": Sleeper(0.004)}
    result = compare_forward(modules, torch.zeros(3, 2), warmup=1, rounds=5, block_seconds=0.01, threads=1)
    assert torch.get_num_threads() == before
    slow, fast = result["slow"], result["fast"]
    assert 0.004 <= slow["median_s"] < 0.05  # per call, not per block
    assert fast["median_s"] < slow["median_s"] / 10
    assert slow["calls"] >= 5 * 3  # 0.004 s calls: at least three to make a 0.01 s block, in each of 5 rounds
    assert fast["calls"] > slow["calls"] * 10
    assert slow["runs"] == fast["runs"] == 5
    assert slow["batch_size"] == 3 and slow["threads"] == 1
    assert slow["p10_s"] <= slow["median_s"] <= slow["p90_s"]


def test_a_zero_block_time_times_single_calls() -> None:
    result = compare_forward({"m": Sleeper(0.001)}, torch.zeros(1), warmup=0, rounds=4, block_seconds=0.0)
    assert result["m"]["calls"] == 4
    assert result["m"]["median_s"] >= 0.001
