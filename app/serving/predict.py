"""``POST /predict``: images in, ranked classes out; the front door that foldserve has always had.

Parses the query, resolves the variant, reads and splits the body, then hands the images to the data plane
(:meth:`app.serving.dataplane.DataPlane.classify`) and ranks the logits. The answer is encoded once with
orjson (no per-request pydantic validation; :class:`app.serving.schemas.PredictResponse` documents it).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import torch
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from app.serving.asgi import Exchange, parse_bool, parse_int, query_params
from app.serving.bodies import image_media_type, split_images
from app.serving.dataplane import DataPlane, Inference
from app.serving.errors import InvalidParameter
from app.serving.scores import probabilities, top_k

__all__ = ["MAX_MODEL_NAME", "MAX_TOP_K", "PROTOCOL", "predict", "rank"]

PROTOCOL = "predict"
MAX_MODEL_NAME = 64
MAX_TOP_K = 100_000
"""The most classes a manifest may have: a larger ``top_k`` is an invalid parameter, a smaller one is clipped
to the model's classes."""


async def predict(plane: DataPlane, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /predict``."""
    async with Exchange(send, plane.metrics, PROTOCOL, scope) as exchange:
        started = time.perf_counter()
        params = query_params(scope)
        model = params.get("model")
        if model is not None and not 1 <= len(model) <= MAX_MODEL_NAME:
            raise InvalidParameter(f"query.model: 1 to {MAX_MODEL_NAME} characters, got {len(model)}")
        collapsed = parse_bool(params, "collapsed", True)
        variant = plane.variant(model, collapsed)
        exchange.resolved(variant.model, variant.name)
        labels = variant.loaded.manifest.labels
        # more than the model's classes lists them all, as Triton's classification extension does
        top_k = min(parse_int(params, "top_k", 3, low=1, high=MAX_TOP_K), len(labels))
        headers = Headers(scope=scope)
        media_type = image_media_type(headers)
        deadline = plane.deadline()
        async with plane.request_body(receive, headers, deadline) as body:
            blobs = split_images(headers, media_type, body, max_images=plane.settings.max_images_per_request)
            del body
            inference = await plane.classify(variant, blobs, deadline)
        await exchange.answer(_encode(inference, labels, top_k, started))


def _encode(inference: Inference, labels: list[str], top_k: int, started: float) -> bytes:
    variant = inference.variant
    return orjson.dumps(
        {
            "model": variant.model,
            "variant": variant.name,
            "simplification": variant.loaded.report["kind"] if variant.collapsed else None,
            "predictions": rank(inference.logits(), labels, top_k),
            "timings_ms": {
                "decode": inference.decode_s * 1e3,
                "queue": inference.queue_s * 1e3,
                "inference": inference.inference_s * 1e3,
                "total": (time.perf_counter() - started) * 1e3,
            },
        }
    )


def rank(logits: torch.Tensor, labels: list[str], k: int) -> list[dict[str, Any]]:
    """Each image's ``k`` most probable classes, best first, from its row of ``[N, K]`` logits."""
    ranked = []
    for row in logits.tolist():
        chances = probabilities(row)
        scores = [{"label": labels[i], "index": i, "probability": chances[i]} for i in top_k(chances, k)]
        ranked.append({**scores[0], "top_k": scores})
    return ranked
