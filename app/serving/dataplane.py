"""The data plane: what every front door (``/predict``, the Open Inference Protocol over REST and gRPC, Ray)
calls to turn a request into logits, with the same limits, deadlines and metrics whatever carried it.

A request names a model's variant (:meth:`DataPlane.variant`), has its body read under the limits and the
process's byte budget (:meth:`DataPlane.request_body`), then either brings encoded images
(:meth:`DataPlane.classify`: headers checked, pixel budget, decoded, inferred) or a ready tensor
(:meth:`DataPlane.infer`). Where the work runs is chosen per request, from costs measured at load:

- decoding runs on the event loop when the request's images have at most ``inline_decode_max_pixels``
  pixels in all (a 28x28 PNG decodes in tens of µs: a thread hand-off costs more), else in the
  :class:`DecodePool`, bounded in threads and waiting jobs, under the request's deadline;
- the forward pass runs on the event loop when the variant was measured cheap at load (``Variant.inline``:
  the collapsed affine map takes µs) and nothing is queued for it; otherwise the variant's
  :class:`~app.serving.batching.DynamicBatcher` batches it with other requests in its worker thread.

Deadlines are absolute times on the event loop's clock (``loop.time()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from starlette.datastructures import Headers
from starlette.types import Receive

from app.config import Settings
from app.serving.batching import BatchResult
from app.serving.bodies import BodyLimits, ByteBudget, read_body
from app.serving.errors import DeadlineExceeded, Overloaded, TooManyPixels
from app.serving.images import ImageLimits, decode_checked, probe_images
from app.serving.registry import ModelRegistry, Variant
from app.serving.resources import thread_budget
from app.store import InputSpec

__all__ = ["DataPlane", "DecodePool", "Inference"]


@dataclass(frozen=True)
class Inference:
    """The answer of a variant to one request's images, and where its time went."""

    variant: Variant
    results: list[BatchResult]  # one per image, in order
    decode_s: float

    @property
    def queue_s(self) -> float:
        return max(r.queue_seconds for r in self.results)

    @property
    def inference_s(self) -> float:
        return max(r.inference_seconds for r in self.results)

    def logits(self) -> torch.Tensor:
        """``[N, K]`` float32 logits."""
        return torch.stack([r.logits for r in self.results])


class DecodePool:
    """Threads that decode large images, with a bound on the jobs that wait for them.

    Args:
        threads: decoding threads (the decoders release the GIL).
        max_waiting: jobs that may wait for a thread; beyond, a request gets 503 ``overloaded``.
        retry_after_s: the ``Retry-After`` to suggest then.
    """

    def __init__(self, threads: int, max_waiting: int, retry_after_s: int = 1) -> None:
        self.threads = threads
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="foldserve-decode", initializer=_lower_priority
        )
        self._jobs = 0  # submitted and not finished

    async def decode(self, blobs: list[bytes], spec: InputSpec, deadline: float) -> torch.Tensor:
        """Decode ``blobs`` (headers already checked) in the pool, by ``deadline``.

        Raises:
            Overloaded: too many jobs wait. DeadlineExceeded: the deadline passed first.
            InvalidImage: an image is unreadable.
        """
        if self._jobs >= self.threads + self.max_waiting:
            raise Overloaded(
                f"{self._jobs} decoding jobs are running or waiting, the most there may be is "
                f"{self.threads + self.max_waiting}",
                retry_after_s=self.retry_after_s,
            )
        abandoned = threading.Event()
        self._jobs += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: decode_checked(blobs, spec, cancelled=abandoned.is_set)
        )
        future.add_done_callback(self._finished)
        try:
            async with asyncio.timeout_at(deadline):
                return await future
        except TimeoutError:
            raise DeadlineExceeded("the deadline passed while the images were decoded") from None
        finally:
            abandoned.set()  # stops a job still running at its next image

    def _finished(self, _: object) -> None:
        self._jobs -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


DECODE_NICENESS = 10
"""Scheduling niceness of the decode threads: a flood of large images then takes the cores the event loop and
the forward passes leave over, rather than an equal share (Linux weighs niceness 10 against 0 about 1:10)."""


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # per-thread niceness: Linux; elsewhere a no-op
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)


class DataPlane:
    """One registry, one decoder, one byte budget for bodies and the request rules, shared by every front door."""

    def __init__(self, models: ModelRegistry, settings: Settings) -> None:
        self.models = models
        self.settings = settings
        self.metrics = models.metrics
        self.limits = ImageLimits(settings.max_image_pixels, settings.max_aspect_ratio)
        self.body_budget = ByteBudget(settings.max_inflight_body_bytes, settings.retry_after_s)
        self.body_limits = BodyLimits(settings.max_body_bytes, settings.min_upload_bytes_per_s)
        threads = thread_budget(settings).decode
        # Jobs wait rather than being refused: a client whose large images wait holds nothing but its compressed
        # body (bounded by the byte budget) and costs the event loop nothing, while a refused one comes straight
        # back. Measured: refusing past 4 jobs a thread turned 16 flooding clients into 2,000 requests/s of 503s
        # that took the event loop from every other model (p50 x8 to x14); waiting, they take the decode thread.
        self.decoder = DecodePool(threads, max_waiting=settings.max_queue_size, retry_after_s=settings.retry_after_s)

    def variant(self, model: str | None, collapsed: bool) -> Variant:
        """The variant a request asks for (``model`` None: the default model).

        Raises:
            ModelNotFound, ModelNotReady, Unavailable: see :meth:`ModelRegistry.variant`.
        """
        return self.models.variant(model, "collapsed" if collapsed else "original")

    def deadline(self) -> float:
        """The deadline of a request that starts now."""
        return asyncio.get_running_loop().time() + self.settings.request_timeout_s

    @contextlib.asynccontextmanager
    async def request_body(self, receive: Receive, headers: Headers, deadline: float) -> AsyncIterator[bytes]:
        """A request's whole body (:func:`~app.serving.bodies.read_body`: the size limit, the deadline, the least
        upload rate), counted in the process's byte budget until the block ends."""
        with self.body_budget.hold() as tally:
            yield await read_body(
                receive, headers, limits=self.body_limits, deadline=deadline, budget=self.body_budget, tally=tally
            )

    async def classify(self, variant: Variant, blobs: list[bytes], deadline: float) -> Inference:
        """Check, decode and infer encoded images.

        Raises:
            InvalidImage, ImageTooLarge, ImageAspectRatio, TooManyPixels: the images (4xx).
            QueueFull, Overloaded: no room now (503). DeadlineExceeded: no answer by ``deadline`` (504).
        """
        spec = variant.loaded.manifest.input
        with variant.batcher.admit():  # refuse before looking at the images when the queue is already full
            pixels = probe_images(blobs, self.limits)
            if pixels > self.settings.max_request_pixels:
                raise TooManyPixels(
                    f"the request's {len(blobs)} images have {pixels} pixels in all, the limit is "
                    f"{self.settings.max_request_pixels}"
                )
            started = time.perf_counter()
            if pixels <= self.settings.inline_decode_max_pixels:
                images = decode_checked(blobs, spec)
            else:
                try:
                    images = await self.decoder.decode(blobs, spec, deadline)
                except DeadlineExceeded:
                    variant.series.rejections("deadline").inc()
                    raise
            decode_s = time.perf_counter() - started
        variant.series.decode_duration.observe(decode_s)
        return await self.infer(variant, images, deadline, decode_s=decode_s)

    async def infer(
        self, variant: Variant, images: torch.Tensor, deadline: float, *, decode_s: float = 0.0
    ) -> Inference:
        """Run ``images`` (``[N, C, H, W]`` float32, normalised) through ``variant`` by ``deadline``.

        Raises:
            QueueFull: the variant's queue cannot take them. DeadlineExceeded: no answer by ``deadline``.
        """
        batcher = variant.batcher
        if variant.inline and batcher.idle and len(images) <= batcher.max_batch_size:
            results = batcher.run_inline(images)
        else:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                variant.series.rejections("deadline").inc()
                raise DeadlineExceeded(f"no answer within the deadline of {self.settings.request_timeout_s:g} s")
            results = await batcher.submit(images, timeout=remaining)
        inference = Inference(variant, results, decode_s)
        variant.series.queue_duration.observe(inference.queue_s)
        return inference

    def close(self) -> None:
        self.decoder.close()
