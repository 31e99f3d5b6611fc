"""DynamicBatcher: batches form under concurrency, each image gets its own row, limits are enforced."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch
from prometheus_client import CollectorRegistry
from torch import nn

from app.serving.batching import DynamicBatcher
from app.serving.errors import DeadlineExceeded, QueueFull, ServingError, Unavailable
from app.serving.metrics import ServingMetrics
from tests.server import eventually_async


class Recorder(nn.Module):
    """Answers ``[x.sum(), -x.sum()]`` per image and records the batch sizes it saw."""

    def __init__(self, gate: threading.Event | None = None, fail_on: float | None = None) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.entered = threading.Event()  # set once a forward pass has begun (before the gate)
        self.gate = gate
        self.fail_on = fail_on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        self.sizes.append(len(x))
        total = x.flatten(1).sum(1)
        if self.fail_on is not None and bool((total == self.fail_on).any()):
            raise RuntimeError("planted failure")
        return torch.stack([total, -total], dim=1)


def image(value: float) -> torch.Tensor:
    return torch.full((1, 1, 1, 1), value)


@pytest.fixture
def metrics() -> ServingMetrics:
    m = ServingMetrics(CollectorRegistry())
    m.add_model("m")
    return m


async def started(module: nn.Module, metrics: ServingMetrics | None = None, **kwargs: float) -> DynamicBatcher:
    options = {"max_batch_size": 8, "max_wait": 0.05, "max_queue_size": 64, **kwargs}
    batcher = DynamicBatcher(
        module,
        max_batch_size=int(options["max_batch_size"]),
        max_wait=float(options["max_wait"]),
        max_queue_size=int(options["max_queue_size"]),
        metrics=metrics.variant("m", "collapsed") if metrics else None,
    )
    batcher.start()
    return batcher


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1, got 0"),
        ({"max_wait": -0.1}, "max_wait must be >= 0 seconds, got -0.1"),
        ({"max_wait": float("nan")}, "max_wait must be >= 0 seconds, got nan"),
        ({"max_queue_size": 0}, "max_queue_size must be >= 1, got 0"),
    ],
)
def test_knobs_are_checked_at_construction(kwargs: dict[str, float], message: str) -> None:
    options = {"max_batch_size": 4, "max_wait": 0.01, "max_queue_size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        DynamicBatcher(nn.Identity(), **options)  # type: ignore[arg-type]


async def test_concurrent_requests_share_a_batch_and_keep_their_rows(metrics: ServingMetrics) -> None:
    model = Recorder()
    batcher = await started(model, metrics, max_wait=0.2)
    try:
        results = await asyncio.gather(*(batcher.submit(image(float(i))) for i in range(6)))
    finally:
        await batcher.close()
    assert model.sizes == [6]  # all six arrived within max_wait: one forward pass
    for i, (result,) in enumerate(results):
        torch.testing.assert_close(result.logits, torch.tensor([float(i), -float(i)]))
        assert result.batch_size == 6
    labels = {"model": "m", "variant": "collapsed"}
    assert metrics.registry.get_sample_value("foldserve_batch_size_count", labels) == 1
    assert metrics.registry.get_sample_value("foldserve_batch_size_sum", labels) == 6
    assert metrics.registry.get_sample_value("foldserve_inference_duration_seconds_count", labels) == 1
    assert metrics.registry.get_sample_value("foldserve_queue_depth", labels) == 0


async def test_batches_are_capped_at_max_batch_size() -> None:
    model = Recorder()
    batcher = await started(model, max_batch_size=4, max_wait=0.2)
    try:
        results = await batcher.submit(torch.arange(10.0).view(10, 1, 1, 1))
    finally:
        await batcher.close()
    assert model.sizes == [4, 4, 2]
    assert [float(r.logits[0]) for r in results] == [float(i) for i in range(10)]


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    batcher = await started(Recorder(), max_wait=0.0)
    try:
        (result,) = await batcher.submit(image(3.0), timeout=5.0)
    finally:
        await batcher.close()
    assert result.batch_size == 1 and result.queue_seconds < 1.0


async def test_full_queue_is_refused(metrics: ServingMetrics) -> None:
    gate = threading.Event()
    model = Recorder(gate)
    batcher = await started(model, metrics, max_batch_size=1, max_wait=0.0, max_queue_size=2)
    try:
        running = asyncio.ensure_future(batcher.submit(image(1.0)))
        await eventually_async(model.entered.is_set, "the first image inside the (blocked) forward pass")
        waiting = asyncio.ensure_future(batcher.submit(torch.ones(2, 1, 1, 1)))
        await eventually_async(lambda: batcher.queue_depth == 2, "two images filling the queue")
        with pytest.raises(QueueFull, match="2 of 2 images waiting") as info:
            await batcher.submit(image(2.0))
        assert info.value.headers() == {"Retry-After": "1"}
        gate.set()
        assert len(await running) == 1 and len(await waiting) == 2
    finally:
        gate.set()
        await batcher.close()
    value = metrics.registry.get_sample_value(
        "foldserve_rejections_total", {"model": "m", "variant": "collapsed", "reason": "queue_full"}
    )
    assert value == 1


async def test_deadline_gives_deadline_exceeded(metrics: ServingMetrics) -> None:
    gate = threading.Event()
    batcher = await started(Recorder(gate), metrics, max_wait=0.0)
    try:
        with pytest.raises(DeadlineExceeded, match=r"deadline of 0\.050 s"):
            await batcher.submit(image(1.0), timeout=0.05)
    finally:
        gate.set()
        await batcher.close()
    value = metrics.registry.get_sample_value(
        "foldserve_rejections_total", {"model": "m", "variant": "collapsed", "reason": "deadline"}
    )
    assert value == 1


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    model = Recorder(fail_on=13.0)
    batcher = await started(model, max_batch_size=1, max_wait=0.0)
    try:
        outcomes = await asyncio.gather(
            batcher.submit(image(1.0)), batcher.submit(image(13.0)), batcher.submit(image(2.0)), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert isinstance(outcomes[1], ServingError) and outcomes[1].status_code == 500
    assert float(outcomes[0][0].logits[0]) == 1.0  # type: ignore[index]
    assert float(outcomes[2][0].logits[0]) == 2.0  # type: ignore[index]


async def test_closed_batcher_refuses_and_fails_waiting_images() -> None:
    gate = threading.Event()
    model = Recorder(gate)
    batcher = await started(model, max_wait=0.0)
    pending = asyncio.ensure_future(batcher.submit(image(1.0)))
    await eventually_async(model.entered.is_set, "the image inside the (blocked) forward pass")
    await batcher.close()
    gate.set()
    with pytest.raises(Unavailable, match="shutting down"):
        await pending
    with pytest.raises(Unavailable, match="not serving"):
        await batcher.submit(image(1.0))
