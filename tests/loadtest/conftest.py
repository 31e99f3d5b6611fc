"""A fake foldserve on 127.0.0.1 for the plumbing tests: the HTTP API's shape, answers we can predict."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BUCKETS = (0.001, 0.01, 0.1, 1.0)


class FakeServer:
    """Answers /predict with 200 (or 503 + Retry-After when ``reject`` is set) and counts in /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "variant")
        self.requests = Counter("foldserve_requests", "answers", [*labels, "status"], registry=self.registry)
        self.decode = Histogram(
            "foldserve_decode_duration_seconds", "d", labels, buckets=BUCKETS, registry=self.registry
        )
        self.inference = Histogram(
            "foldserve_inference_duration_seconds", "i", labels, buckets=BUCKETS, registry=self.registry
        )
        self.reject = False
        self.bodies: list[bytes] = []
        self.app = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/predict", self.predict, methods=["POST"]),
                Route("/metrics", self.metrics),
                Route("/models", self.models),
            ]
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        return JSONResponse([{"name": "fake"}])

    async def predict(self, request: Request) -> Response:
        body = await request.body()
        self.bodies.append(body)
        variant = "collapsed" if request.query_params["collapsed"] == "true" else "original"
        model = request.query_params["model"]
        if self.reject:
            self.requests.labels(model, variant, "503").inc()
            return JSONResponse({"error": {"code": "busy", "message": "m"}}, 503, headers={"Retry-After": "1"})
        self.decode.labels(model, variant).observe(0.005)  # always in the (0.001, 0.01] bucket
        self.inference.labels(model, variant).observe(0.05 if variant == "original" else 0.0005)
        self.requests.labels(model, variant, "200").inc()
        return JSONResponse({"model": model, "variant": variant, "predictions": []})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type="text/plain")


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeServer]]:
    """A :class:`FakeServer` served by uvicorn in a thread on a free port; stopped after the test."""
    fake = FakeServer()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fake server did not start within 10 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
