"""The application: :func:`create_app`, the lifespan that loads the models, and the dispatch of the hot routes.

Everything a door needs (the registry, the data plane, the protocol's service) is built by :func:`create_app`;
models load in the background once the server is up (a worker that replaces one that died loads them first):
``/healthz`` answers at once, ``/readyz`` turns 200 when every model has finished loading and one is ready, and
a model that fails is listed in ``/models`` with its reason. Nothing loads at import time. The lifespan also
starts and stops the Open Inference Protocol's gRPC server (:mod:`app.serving.v2.grpc_server`) in the same event
loop, on ``FOLDSERVE_GRPC_PORT``.

The inference routes (``POST /predict``, ``POST /v2/models/{name}[/versions/{version}]/infer``) are plain ASGI
callables answered by :class:`FoldServeAPI` before FastAPI's middleware and routing; every other route is an
ordinary FastAPI route. They are also registered as routes, so that they exist for the router (a ``GET
/predict`` gets 405) and in the OpenAPI document (:mod:`app.serving.openapi`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings, get_settings
from app.serving.dataplane import DataPlane
from app.serving.errors import install_error_handlers, route_path
from app.serving.loading import resolve_device
from app.serving.metrics import ServingMetrics
from app.serving.openapi import install_openapi
from app.serving.predict import predict
from app.serving.registry import ModelRegistry
from app.serving.repository import ModelControl
from app.serving.repository import router as repository_router
from app.serving.resources import limit_malloc_arenas, thread_budget
from app.serving.routes import router
from app.serving.served_copies import ServedCopies
from app.serving.ui import LiveStats
from app.serving.ui import router as ui_router
from app.serving.v2.grpc_server import start_grpc_server
from app.serving.v2.rest_infer import INFER_PATHS
from app.serving.v2.rest_infer import infer as v2_infer
from app.serving.v2.routes import router as v2_router
from app.serving.v2.service import InferenceService

__all__ = ["FoldServeAPI", "create_app", "torch_threads"]

logger = logging.getLogger(__name__)


class FoldServeAPI(FastAPI):
    """FastAPI, with the inference routes (``POST`` only) answered before its middleware and routing."""

    hot_routes: dict[str, ASGIApp]  # path, with {parameters} as Starlette writes them -> handler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot_routes = {}
        self._hot_patterns: list[tuple[re.Pattern[str], ASGIApp]] = []

    def add_hot_route(self, path: str, route: ASGIApp) -> None:
        """Answer ``POST path`` with ``route``; path parameters arrive in ``scope["path_params"]``."""
        self.hot_routes[path] = route
        if "{" in path:
            self._hot_patterns.append((compile_path(path)[0], route))
        # a partial is no function: Starlette runs it as an ASGI app
        self.router.routes.append(Route(path, route, methods=["POST"], include_in_schema=False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = route_path(scope)
            route = self.hot_routes.get(path)
            if route is None:
                for pattern, candidate in self._hot_patterns:
                    match = pattern.match(path)
                    if match is not None:
                        route, scope["path_params"] = candidate, match.groupdict()
                        break
            if route is not None:
                await route(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    served_copies: Path | None = None,
    load_before_serving: bool = False,
) -> FoldServeAPI:
    """Build the service: the registry, the data plane and every door over them; the lifespan only loads.

    Args:
        settings: defaults to :func:`app.config.get_settings` (the environment).
        registry: where the metrics live; defaults to a fresh ``CollectorRegistry`` served at ``/metrics``.
        served_copies: with several workers, the folder where they keep copies of the versions they serve
            (:mod:`app.serving.served_copies`).
        load_before_serving: the lifespan's start-up waits for the models and only then starts gRPC, so the
            server accepts no connection before its models are loaded: a worker replacing one that died, while
            its siblings serve.

    Raises:
        ValueError: ``settings.device`` is ``cuda`` and CUDA is not available.
    """
    settings = settings or get_settings()
    limit_malloc_arenas(settings.malloc_arenas)  # before any load's thread takes an arena
    device = resolve_device(settings.device)
    multiprocess_dir = settings.metrics_dir if settings.workers > 1 else None
    if registry is None:
        registry = CollectorRegistry()
        if multiprocess_dir is None:  # one worker's process metrics would misdescribe several
            ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends
            PlatformCollector(registry=registry)
    metrics = ServingMetrics(registry, multiprocess_dir=multiprocess_dir)
    copies = ServedCopies(served_copies) if served_copies is not None else None
    models = ModelRegistry(settings, metrics, device, copies)
    control = ModelControl(models, settings)
    plane = DataPlane(models, settings)
    v2 = InferenceService(plane)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(torch_threads(settings, device))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # inputs have a fixed size: let cuDNN pick its kernels
            # float32 as verified: each runtime's outputs are checked at load against float64 as they will be
            # served, and TF32's 10-bit mantissa would put convolutions 1e-3 off, ten times the tolerance
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        models.discover()
        if settings.model_control == "poll":
            control.remember_store()
        loop = asyncio.get_running_loop()
        metrics.workers.set(1)
        tasks = [
            loop.create_task(models.load_all(), name="foldserve-load-models"),
            loop.create_task(_watch_memory(metrics), name="foldserve-memory"),
        ]
        if settings.model_control == "poll":
            tasks.append(loop.create_task(_follow_store(tasks[0], control), name="foldserve-follow-store"))
        stop_grpc = None
        try:
            if load_before_serving:
                await tasks[0]
            stop_grpc = await start_grpc_server(v2) if settings.grpc_port else None
            yield
        finally:
            if stop_grpc is not None:  # after uvicorn drained HTTP; calls in flight end within their deadline
                await stop_grpc(min(settings.drain_s, settings.request_timeout_s))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await models.close()
            plane.close()

    app = FoldServeAPI(
        title="foldserve",
        summary="ResNet classifiers served as trained and algebraically simplified",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.device = device
    app.state.models = models
    app.state.model_control = control
    app.state.v2 = v2
    app.state.live_stats = LiveStats(metrics)
    install_error_handlers(app)
    app.include_router(router)
    if settings.ui:
        app.include_router(ui_router)
    app.include_router(v2_router)
    app.include_router(repository_router)
    app.add_hot_route("/predict", partial(predict, plane))
    for path in INFER_PATHS:
        app.add_hot_route(path, partial(v2_infer, v2))
    install_openapi(app)
    return app


async def _follow_store(loading: asyncio.Task[None], control: ModelControl) -> None:
    await asyncio.wait([loading])  # then every change since discovery is loaded, one made during the first loads too
    await control.follow_store()


async def _watch_memory(metrics: ServingMetrics) -> None:
    while True:
        await asyncio.to_thread(metrics.read_memory)  # smaps_rollup of a large process takes a millisecond
        await asyncio.sleep(MEMORY_PERIOD_S)


MEMORY_PERIOD_S = 5.0
"""How often each worker refreshes its share of ``foldserve_memory_bytes``."""


def torch_threads(settings: Settings, device: torch.device) -> int:
    """Intra-op threads of one worker: on the CPU its :func:`~app.serving.resources.thread_budget`; elsewhere the
    setting, else torch's own choice."""
    if device.type != "cpu" and settings.torch_threads is None:
        return torch.get_num_threads()
    return thread_budget(settings).torch
