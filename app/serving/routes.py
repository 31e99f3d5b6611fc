"""The HTTP endpoints. Each parses, calls one thing and returns; errors are raised, never built here."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.serving.errors import Unavailable
from app.serving.registry import ModelRegistry
from app.serving.schemas import Health, ModelInfo, ModelList, Readiness, model_info

__all__ = ["router"]

router = APIRouter()


def _models(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.models
    return registry


@router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> Health:
    """200 while the process runs."""
    return Health()


@router.get("/readyz", response_model=Readiness, tags=["health"])
async def readyz(request: Request) -> Readiness:
    """200 once every model has finished loading and at least one is ready (strict mode: and none failed), with
    the failed models and their reasons; 503 before, saying what it waits for."""
    readiness = _models(request).readiness()
    if not readiness.ready:
        raise Unavailable(f"not ready: {readiness.reason}", retry_after_s=request.app.state.settings.retry_after_s)
    return Readiness(models=readiness.models, failed=readiness.failed)


@router.get("/models", response_model=ModelList, tags=["models"])
async def list_models(request: Request) -> ModelList:
    """Every model of the store: manifest summary, variants, verification, speedup and status."""
    models = _models(request)
    return ModelList(default=models.default, models=[model_info(entry) for entry in models.entries.values()])


@router.get("/models/{name}", response_model=ModelInfo, tags=["models"])
async def get_model(request: Request, name: str) -> ModelInfo:
    """One model, as in /models; 404 for an unknown name."""
    return model_info(_models(request).get(name))


@router.get(
    "/metrics",
    tags=["metrics"],
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
