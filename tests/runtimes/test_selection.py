"""Choosing among runtimes and batch sizes, on runtimes whose costs the test sets."""

from __future__ import annotations

import time

import torch

from app.runtimes import Runtime
from app.runtimes.select import CandidateReport, SelectionOptions, _choose, _doublings, _largest_batch

CPU = torch.device("cpu")


class Costed(Runtime):
    """Answers zeros after sleeping ``cost(n)`` seconds for a batch of ``n``."""

    def __init__(self, name: str, cost: dict[int, float]) -> None:
        self.name, self.cost = name, cost  # type: ignore[misc]
        self.device, self.threads = CPU, 1
        self.sizes: list[int] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(batch))
        time.sleep(self.cost[len(batch)])
        return torch.zeros(len(batch), 2)


def options(cap: int) -> SelectionOptions:
    return SelectionOptions(
        candidates=(), device=CPU, threads=1, tolerance=1e-4, max_batch_size=cap, rounds=3, block_seconds=0.0
    )


def test_doublings_end_at_the_cap() -> None:
    assert _doublings(1) == []
    assert _doublings(2) == [2]
    assert _doublings(32) == [2, 4, 8, 16, 32]
    assert _doublings(24) == [2, 4, 8, 16, 24]


def test_the_batch_grows_while_images_per_second_rise_by_five_percent() -> None:
    # 1 image: 10 ms; 2 and 4 images: the same 10 ms (images/s doubles); 8 images: 20 ms (no gain): stop at 4
    runtime = Costed("a", {1: 0.01, 2: 0.01, 4: 0.01, 8: 0.02, 16: 0.04})
    size, curve = _largest_batch(runtime, 0.01, torch.zeros(1, 1, 2, 2), options(16))
    assert size == 4
    assert sorted(curve) == [1, 2, 4, 8]  # 16 never tried
    assert 16 not in runtime.sizes
    assert curve[8] < curve[4] * 1.05


def test_a_network_that_batching_slows_is_never_batched() -> None:
    runtime = Costed("a", {1: 0.01, 2: 0.03})  # two images take three times one: ResNet-50 on two cores
    size, curve = _largest_batch(runtime, 0.01, torch.zeros(1, 1, 2, 2), options(32))
    assert size == 1 and sorted(curve) == [1, 2]


def test_the_cap_bounds_the_batch() -> None:
    runtime = Costed("a", {1: 0.01, 2: 0.01, 3: 0.01})
    size, _ = _largest_batch(runtime, 0.01, torch.zeros(1, 1, 2, 2), options(3))
    assert size == 3 and max(runtime.sizes) == 3


def test_the_choice_weighs_batch_one_and_the_largest_batch() -> None:
    # "quick" leads at batch 1 by 20% and its images/s rise up to 4 images; at 4, "wide" is twice as fast: wide's
    # worse ratio to the fastest (1.2, at batch 1) beats quick's (2.0, at batch 4)
    quick = Costed("quick", {1: 0.010, 2: 0.010, 4: 0.010, 8: 0.040})
    wide = Costed("wide", {1: 0.012, 2: 0.012, 4: 0.005, 8: 0.010})
    built: dict[str, Runtime] = {"quick": quick, "wide": wide}
    reports = {name: CandidateReport(name) for name in built}
    chosen, size, curve = _choose(built, reports, torch.zeros(1, 1, 2, 2), options(8))
    assert chosen == "wide"
    assert size == 4  # its own doublings: 8 images in 10 ms are no more images/s than 4 in 5 ms
    assert set(reports["quick"].latency_s) == {1, 4}
    assert set(reports["wide"].latency_s) == {1, 2, 4, 8}
    assert curve[4] > curve[2] and curve[8] < curve[4] * 1.05
