"""The HTTP endpoints. Each parses, calls one thing and returns; errors are raised, never built here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.serving.errors import Unavailable
from app.serving.predict import predict
from app.serving.registry import ModelRegistry
from app.serving.schemas import Health, ModelInfo, ModelList, PredictResponse, Readiness, model_info
from app.serving.uploads import FILE_FIELD

__all__ = ["router"]

router = APIRouter()

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {FILE_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": [FILE_FIELD],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _models(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.models
    return registry


@router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> Health:
    """200 while the process runs."""
    return Health()


@router.get("/readyz", response_model=Readiness, tags=["health"])
async def readyz(request: Request) -> Readiness:
    """200 once at least one model is loaded, verified and warmed up; 503 before."""
    models = _models(request)
    if not models.ready:
        raise Unavailable("no model is ready yet", retry_after_s=request.app.state.settings.retry_after_s)
    return Readiness(models=models.ready)


@router.get("/models", response_model=ModelList, tags=["models"])
async def list_models(request: Request) -> ModelList:
    """Every model of the store: manifest summary, variants, verification, speedup and status."""
    models = _models(request)
    default = request.app.state.settings.default_model or (models.ready[0] if models.ready else None)
    return ModelList(default=default, models=[model_info(entry) for entry in models.entries.values()])


@router.get("/models/{name}", response_model=ModelInfo, tags=["models"])
async def get_model(request: Request, name: str) -> ModelInfo:
    """One model, as in /models; 404 for an unknown name."""
    return model_info(_models(request).get(name))


@router.post("/predict", response_model=PredictResponse, tags=["predict"], openapi_extra=_IMAGE_BODY)
async def predict_route(
    request: Request,
    model: Annotated[str | None, Query(max_length=64, description="model name; default: the default model")] = None,
    collapsed: Annotated[bool, Query(description="true: the simplified network; false: the original")] = True,
    top_k: Annotated[int, Query(ge=1, le=1000, description="classes listed per image")] = 3,
) -> PredictResponse:
    """Classify one or more images (multipart ``file`` parts, or a raw body with an image content type)."""
    state = request.app.state
    return await predict(
        request,
        models=state.models,
        settings=state.settings,
        metrics=state.metrics,
        model=model,
        collapsed=collapsed,
        top_k=top_k,
    )


@router.get("/metrics", tags=["metrics"])
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
