"""Dynamic batching: images from concurrent requests share one forward pass.

One :class:`DynamicBatcher` serves one network (a model's collapsed or original variant, on its runtime). Requests put
their images in a bounded queue; a collector task on the event loop closes a batch when it holds
``max_batch_size`` images or when its oldest image has waited ``max_wait`` seconds, and runs the forward
pass in the batcher's own worker thread under ``torch.inference_mode()``, so the event loop never blocks.
While one batch runs the next one fills, so under load batches grow by themselves.

On CUDA the batch is assembled in pinned host memory, copied with ``non_blocking=True``, and padded to a
power of two so that ``cudnn.benchmark`` tunes only a handful of shapes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from app.serving.errors import DeadlineExceeded, QueueFull, ServingError, Unavailable
from app.serving.metrics import VariantSeries

__all__ = ["BatchResult", "DynamicBatcher"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    """What one image got back from its batch."""

    logits: torch.Tensor  # [num_classes] float32 on the CPU
    queue_seconds: float  # from submission to the start of its batch's forward pass
    inference_seconds: float  # the batch's forward pass, copies included
    batch_size: int  # images in that batch


@dataclass
class _Item:
    """One image of a request: row ``index`` of the request's tensor.

    The row is taken out in the worker thread, not here: every tensor operation on the event loop
    competes with decoding and inference for the GIL, and costs each request tens of microseconds.
    """

    images: torch.Tensor
    index: int
    future: asyncio.Future[BatchResult]
    enqueued: float


class DynamicBatcher:
    """Collects images from concurrent requests into batches for one network.

    Args:
        runtime: the network on its runtime (:class:`app.runtimes.Runtime`), or any callable
            ``[N, C, H, W] -> [N, K]`` taking its inputs on ``device``.
        max_batch_size: images per forward pass, at most.
        max_wait: seconds a batch waits for more images once its first image arrived.
        max_queue_size: images that may wait; a request that would overflow it gets :class:`QueueFull`.
        device: where ``runtime`` takes its inputs; batches are copied there.
        metrics: where to record batch sizes, inference time, queue depth and rejections.
        retry_after_s: the ``Retry-After`` to suggest when the queue is full.
    """

    def __init__(
        self,
        runtime: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch_size: int,
        max_wait: float,
        max_queue_size: int,
        device: torch.device | str = "cpu",
        metrics: VariantSeries | None = None,
        retry_after_s: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if not max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        self.runtime = runtime
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_queue_size = max_queue_size
        self.device = torch.device(device)
        self.metrics = metrics
        self.retry_after_s = retry_after_s
        self._queue: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foldserve-inference")
        self._collector: asyncio.Task[None] | None = None
        self._running: list[_Item] = []
        self._staging: torch.Tensor | None = None
        self._closed = False
        self._admitted = 0  # requests between admit() and submit(): being read or decoded

    @property
    def queue_depth(self) -> int:
        """Images waiting for a batch."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing waits for a batch and no forward pass runs."""
        return not self._queue and not self._running

    def run_inline(self, images: torch.Tensor) -> list[BatchResult]:
        """Run ``images`` through the network now, on the calling thread (the event loop), bypassing the queue.

        For variants whose forward pass costs microseconds, two thread hand-offs cost more than the pass
        itself; the caller checks :attr:`idle` first, so an inline pass never overtakes queued images.

        Raises:
            Unavailable: the batcher is closed.
            ServingError: the forward pass failed (logged; a generic 500 for the client).
        """
        self._check_serving()
        if len(images) > self.max_batch_size:
            raise ValueError(f"an inline pass takes at most max_batch_size ({self.max_batch_size}) images")
        started = time.perf_counter()
        try:
            logits = self._forward_batch(images)
        except Exception as exc:
            logger.exception("inline forward pass of %d images failed", len(images), exc_info=exc)
            raise ServingError("inference failed") from None
        seconds = time.perf_counter() - started
        self._record(len(images), seconds, "inline")
        return [BatchResult(row, 0.0, seconds, len(images)) for row in logits]

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._collector is None:
            self._collector = asyncio.get_running_loop().create_task(self._collect(), name="foldserve-batcher")

    async def close(self) -> None:
        """Stop collecting; every image still waiting gets :class:`Unavailable`."""
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        for item in [*self._running, *self._queue]:
            if not item.future.done():
                item.future.set_exception(Unavailable("the service is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, images: torch.Tensor, *, timeout: float | None = None) -> list[BatchResult]:
        """Queue ``images`` (``[N, C, H, W]`` on the CPU) and wait for their logits.

        Raises:
            QueueFull: the queue cannot take ``N`` more images.
            DeadlineExceeded: the answer did not come within ``timeout`` seconds.
            Unavailable: the batcher is closed.
            ServingError: the forward pass failed (logged; a generic 500 for the client).
        """
        self._check_serving()
        if len(self._queue) + len(images) > self.max_queue_size:
            raise self._queue_full()
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        items = [_Item(images, i, loop.create_future(), now) for i in range(len(images))]
        self._queue.extend(items)
        if self.metrics is not None:
            self.metrics.queue_depth.inc(len(items))
        self._arrived.set()
        futures = [item.future for item in items]
        try:
            _, pending = await asyncio.wait(futures, timeout=timeout)
        finally:
            for future in futures:  # on a deadline or a client gone away, nobody wants these any more
                future.cancel()
        if pending:
            self._reject("deadline")
            raise DeadlineExceeded(f"no answer within the deadline of {timeout:.3f} s")
        return [future.result() for future in futures]

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one request while it is read and decoded, before it can :meth:`submit`.

        Under overload, refusing a request before its images are decoded keeps the CPU for the requests
        that will be answered; requests being decoded count as one image each against the queue size.

        Raises:
            QueueFull: the queue and the requests already admitted fill ``max_queue_size``.
        """
        self._check_serving()
        if len(self._queue) + self._admitted >= self.max_queue_size:
            raise self._queue_full()
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    def _check_serving(self) -> None:
        if self._closed or self._collector is None:
            raise Unavailable("this model is not serving", retry_after_s=self.retry_after_s)

    def _queue_full(self) -> QueueFull:
        self._reject("queue_full")
        return QueueFull(
            f"queue is full ({len(self._queue)} of {self.max_queue_size} images waiting, {self._admitted} requests "
            "being decoded)",
            retry_after_s=self.retry_after_s,
        )

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejections(reason).inc()

    async def _collect(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._run(batch)

    async def _next_batch(self) -> list[_Item]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        close_at = self._queue[0].enqueued + self.max_wait
        while len(self._queue) < self.max_batch_size:
            remaining = close_at - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        taken = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch_size))]
        if self.metrics is not None:
            self.metrics.queue_depth.dec(len(taken))
        return [item for item in taken if not item.future.done()]

    async def _run(self, batch: list[_Item]) -> None:
        self._running = batch
        started = time.perf_counter()
        try:
            logits = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._forward, [(item.images, item.index) for item in batch]
            )
        except Exception as exc:
            logger.exception("forward pass of a batch of %d failed", len(batch), exc_info=exc)
            self._running = []
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ServingError("inference failed"))
            return
        self._running = []  # not in a finally: when cancelled, close() still fails these
        seconds = time.perf_counter() - started
        self._record(len(batch), seconds, "batched")
        for i, item in enumerate(batch):
            if not item.future.done():
                item.future.set_result(BatchResult(logits[i], started - item.enqueued, seconds, len(batch)))

    def _record(self, size: int, seconds: float, path: str) -> None:
        if self.metrics is not None:
            self.metrics.batch_size.observe(size)
            self.metrics.inference_duration.observe(seconds)
            self.metrics.forwards(path).inc()

    def _forward(self, rows: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, ...]:
        """The logits of every image, one float32 CPU row each (rows gathered here, in the worker thread)."""
        return self._forward_batch([source[index] for source, index in rows])

    def _forward_batch(self, images: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            if self.device.type != "cuda":
                batch = images if isinstance(images, torch.Tensor) else torch.stack(images)
                return self.runtime(batch).float().unbind(0)
            n = len(images)
            padded = min(1 << (n - 1).bit_length(), self.max_batch_size)
            staging = self._pinned_staging(images[0])
            if isinstance(images, torch.Tensor):
                staging[:n].copy_(images)
            else:
                torch.stack(images, out=staging[:n])
            batch = staging[:padded].to(self.device, non_blocking=True)
            return self.runtime(batch)[:n].float().cpu().unbind(0)

    def _pinned_staging(self, like: torch.Tensor) -> torch.Tensor:
        shape = (self.max_batch_size, *like.shape)
        if self._staging is None or self._staging.shape != shape:
            self._staging = torch.zeros(shape, dtype=like.dtype, pin_memory=True)
        return self._staging
