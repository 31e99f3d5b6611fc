"""Counting every /predict answer, whatever produced it (the route, a validation error, an error handler).

A pure ASGI middleware: it sees the status of each answer and the ``(model, variant)`` that the route left
in the request state. Answers for which no model was resolved (unknown model, invalid parameters before
resolution) are counted with empty ``model`` and ``variant`` labels, so client-chosen strings never become
label values.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.serving.metrics import ServingMetrics
from app.serving.predict import METRIC_LABELS_KEY

__all__ = ["PredictMetricsMiddleware"]

PREDICT_PATH = "/predict"


class PredictMetricsMiddleware:
    """Records ``foldserve_requests_total`` and ``foldserve_request_duration_seconds`` for /predict."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler ends as a 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            model, variant = scope.get("state", {}).get(METRIC_LABELS_KEY, ("", ""))
            self.metrics.requests.labels(model=model, variant=variant, status=str(status)).inc()
            if model:
                self.metrics.request_duration.labels(model=model, variant=variant).observe(
                    time.perf_counter() - started
                )
