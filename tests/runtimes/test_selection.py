"""Choosing among runtimes and batch sizes, on runtimes whose costs the test sets."""

from __future__ import annotations

import time

import torch

from app.runtimes import Runtime
from app.runtimes.select import CandidateReport, SelectionOptions, SplitByBatch, _choose, _doublings

CPU = torch.device("cpu")
EXAMPLE = torch.zeros(1, 1, 2, 2)


class Costed(Runtime):
    """Answers ``[n, 2]`` rows of its mark after sleeping ``cost[n]`` seconds for a batch of ``n``."""

    def __init__(self, name: str, cost: dict[int, float], mark: float = 0.0) -> None:
        self.name, self.cost, self.mark = name, cost, mark  # type: ignore[misc]
        self.device, self.threads = CPU, 1
        self.sizes: list[int] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(batch))
        time.sleep(self.cost[len(batch)])
        return torch.full((len(batch), 2), self.mark)


def choose(
    cap: int, *runtimes: Costed, measure: bool = True
) -> tuple[dict[str, int], int, dict[int, float], dict[str, CandidateReport]]:
    options = SelectionOptions(
        candidates=(),
        device=CPU,
        threads=1,
        tolerance=1e-4,
        max_batch_size=cap,
        measure_batch=measure,
        rounds=3,
        block_seconds=0.0,
    )
    reports = {r.name: CandidateReport(r.name) for r in runtimes}
    parts, size, curve = _choose({r.name: r for r in runtimes}, reports, EXAMPLE, options)
    return parts, size, curve, reports


def test_doublings_end_at_the_cap() -> None:
    assert _doublings(1) == []
    assert _doublings(2) == [2]
    assert _doublings(32) == [2, 4, 8, 16, 32]
    assert _doublings(24) == [2, 4, 8, 16, 24]


def test_the_batch_is_the_smallest_within_five_percent_of_the_best() -> None:
    # 1 image: 10 ms; 2 and 4 images: the same 10 ms (images/s doubles); 8 and 16 images: no more images/s than 4
    runtime = Costed("a", {1: 0.01, 2: 0.01, 4: 0.01, 8: 0.02, 16: 0.04})
    parts, size, curve, reports = choose(16, runtime)
    assert parts == {"a": 1} and size == 4
    assert sorted(curve) == [1, 2, 4] and curve[4] > 1.9 * curve[2]
    assert sorted(reports["a"].latency_s) == [1, 2, 4, 8, 16]  # every size up to the cap is timed


def test_without_measuring_the_batch_is_the_cap() -> None:
    runtime = Costed("a", {1: 0.01, 2: 0.01, 4: 0.01, 8: 0.02, 16: 0.04})
    parts, size, curve, _ = choose(16, runtime, measure=False)
    assert parts == {"a": 1} and size == 16 and sorted(curve) == [1, 2, 4, 8, 16]


def test_a_size_measured_slow_does_not_stop_the_batch() -> None:
    # 2 images measured slow (a burst of other work), 4 images as fast as one: the batch is 4, not 1
    parts, size, _, _ = choose(4, Costed("a", {1: 0.01, 2: 0.03, 4: 0.01}))
    assert parts == {"a": 1} and size == 4


def test_a_network_that_batching_slows_is_never_batched() -> None:
    parts, size, curve, _ = choose(2, Costed("a", {1: 0.01, 2: 0.03}))  # two images take three times one
    assert parts == {"a": 1} and size == 1 and sorted(curve) == [1]


def test_the_cap_bounds_the_batch() -> None:
    runtime = Costed("a", {1: 0.01, 2: 0.01, 3: 0.01})
    _, size, _, _ = choose(3, runtime)
    assert size == 3 and max(runtime.sizes) == 3


def test_larger_batches_go_to_the_runtime_that_is_faster_there() -> None:
    # "quick" is fastest at 1 and 2 images; from 4 images "wide" is twice as fast, and its images/s stop there
    quick = Costed("quick", {1: 0.010, 2: 0.010, 3: 0.0, 4: 0.010}, mark=1.0)
    wide = Costed("wide", {1: 0.012, 2: 0.012, 4: 0.005, 8: 0.010}, mark=2.0)
    parts, size, curve, reports = choose(8, quick, wide)
    assert parts == {"quick": 1, "wide": 4} and size == 4
    assert curve[4] > 3 * curve[2] > 5 * curve[1]
    split = SplitByBatch(quick, wide, split=parts["wide"])
    assert [float(split(torch.zeros(n, 1, 2, 2))[0, 0]) for n in (1, 2, 3, 4, 8)] == [1.0, 1.0, 1.0, 2.0, 2.0]
    assert set(reports["wide"].latency_s) == {1, 2, 4, 8}
    assert set(reports["quick"].latency_s) == {1, 2, 4}  # twice wide's time at 4: not timed at 8


def test_a_second_runtime_must_buy_five_percent() -> None:
    a = Costed("a", {1: 0.0100, 2: 0.0100, 4: 0.03})
    b = Costed("b", {1: 0.0105, 2: 0.0098, 4: 0.03})  # 2% faster at the largest batch: not worth a session
    parts, size, curve, _ = choose(4, a, b)
    assert parts == {"a": 1} and size == 2
    assert curve[2] < 2 / 0.0099  # served on a


def test_a_candidate_far_behind_is_not_timed_at_larger_batches() -> None:
    slow = Costed("slow", {1: 0.020, 2: 0.040})
    fast = Costed("fast", {1: 0.010, 2: 0.011, 4: 0.012})
    parts, size, _, reports = choose(4, slow, fast)
    assert parts == {"fast": 1} and size == 4
    assert set(reports["slow"].latency_s) == {1} and 2 not in slow.sizes
