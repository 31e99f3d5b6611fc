"""The FastAPI application: :func:`create_app` and the lifespan that loads the models.

Models load in the background once the server is up: ``/healthz`` answers at once, ``/readyz`` turns 200
when the first model is ready, and a model that fails is listed in ``/models`` with its reason. Nothing
loads at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import torch
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from app.config import Settings, get_settings
from app.serving.errors import install_error_handlers
from app.serving.loading import resolve_device
from app.serving.metrics import ServingMetrics
from app.serving.middleware import PredictMetricsMiddleware
from app.serving.registry import ModelRegistry
from app.serving.routes import router

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: defaults to :func:`app.config.get_settings` (the environment).
        registry: where the metrics live; defaults to a fresh ``CollectorRegistry`` served at ``/metrics``.

    Raises:
        ValueError: ``settings.device`` is ``cuda`` and CUDA is not available.
    """
    settings = settings or get_settings()
    device = resolve_device(settings.device)
    if registry is None:
        registry = CollectorRegistry()
        # process_resident_memory_bytes and friends: the soak test and operators watch them
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    metrics = ServingMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)
        elif device.type == "cpu":
            # measured on 2 cores: one intra-op thread halves the original ResNet's p50 at concurrency 1,
            # because two threads fight the event loop and the decoders for the same cores
            torch.set_num_threads(max(1, _usable_cores() - 1))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # inputs have a fixed size: let cuDNN pick its kernels
        models = ModelRegistry(settings, metrics, device)
        models.discover()
        app.state.models = models
        loading = asyncio.get_running_loop().create_task(models.load_all(), name="foldserve-load-models")
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await models.close()

    app = FastAPI(
        title="foldserve",
        summary="ResNet classifiers served as trained and algebraically simplified",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.device = device
    install_error_handlers(app)
    app.add_middleware(PredictMetricsMiddleware, metrics=metrics)
    app.include_router(router)
    return app


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
