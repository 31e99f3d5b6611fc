"""One /predict request from bytes to answer: pick the network, read and decode the images, batch, rank.

Decoding runs in a worker thread and inference in the batcher's, so the event loop only waits. The whole
request shares one deadline (``request_timeout_s``), checked by the batcher.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from typing import Literal

from starlette.requests import Request

from app.config import Settings
from app.serving.errors import DeadlineExceeded, InvalidParameter
from app.serving.images import decode_images
from app.serving.metrics import ServingMetrics
from app.serving.registry import ModelRegistry
from app.serving.schemas import ClassScore, Prediction, PredictResponse, Timings
from app.serving.uploads import read_images

__all__ = ["METRIC_LABELS_KEY", "predict"]

METRIC_LABELS_KEY = "foldserve_metric_labels"
"""Key of the request state where :func:`predict` leaves ``(model, variant)`` for the metrics middleware."""


async def predict(
    request: Request,
    *,
    models: ModelRegistry,
    settings: Settings,
    metrics: ServingMetrics,
    model: str | None,
    collapsed: bool,
    top_k: int,
) -> PredictResponse:
    """Answer one /predict request; every failure is a :class:`~app.serving.errors.ServingError`."""
    started = time.perf_counter()
    variant: Literal["collapsed", "original"] = "collapsed" if collapsed else "original"
    entry, batcher = models.batcher(model, variant)
    setattr(request.state, METRIC_LABELS_KEY, (entry.name, variant))
    assert entry.loaded is not None  # a batcher exists only for a loaded model
    manifest = entry.loaded.manifest
    if top_k > len(manifest.labels):
        raise InvalidParameter(f"top_k must be <= {len(manifest.labels)} (the classes of {entry.name}), got {top_k}")
    with batcher.admit():  # refuse before reading and decoding when the queue is already full
        blobs = await read_images(
            request, max_body_bytes=settings.max_body_bytes, max_images=settings.max_images_per_request
        )
        decode_started = time.perf_counter()
        images = await asyncio.to_thread(decode_images, blobs, manifest.input, max_pixels=settings.max_image_pixels)
        decode_s = time.perf_counter() - decode_started
    metrics.decode_duration.labels(model=entry.name, variant=variant).observe(decode_s)
    remaining = started + settings.request_timeout_s - time.perf_counter()
    if remaining <= 0:
        raise DeadlineExceeded(f"no answer within the deadline of {settings.request_timeout_s:.3f} s")
    results = await batcher.submit(images, timeout=remaining)
    queue_s = max(r.queue_seconds for r in results)
    metrics.queue_duration.labels(model=entry.name, variant=variant).observe(queue_s)
    return PredictResponse(
        model=entry.name,
        variant=variant,
        simplification=entry.loaded.report["kind"] if collapsed else None,
        predictions=[_rank(r.logits.tolist(), manifest.labels, top_k) for r in results],
        timings_ms=Timings(
            decode=decode_s * 1e3,
            queue=queue_s * 1e3,
            inference=max(r.inference_seconds for r in results) * 1e3,
            total=(time.perf_counter() - started) * 1e3,
        ),
    )


def _rank(logits: list[float], labels: list[str], top_k: int) -> Prediction:
    """Softmax probabilities of one image's logits (in float64) and its ``top_k`` classes.

    Plain Python rather than torch: for one request's few logits, torch's per-call overhead on the event
    loop (where the GIL is shared with decoding and inference) costs more than the arithmetic.
    """
    peak = max(logits)
    exps = [math.exp(v - peak) for v in logits]
    total = math.fsum(exps)
    best = heapq.nlargest(top_k, range(len(logits)), key=logits.__getitem__)
    scores = [ClassScore(label=labels[i], index=i, probability=exps[i] / total) for i in best]
    return Prediction(**scores[0].model_dump(), top_k=scores)
