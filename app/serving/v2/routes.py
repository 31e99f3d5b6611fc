"""The protocol's REST routes other than inference: health, server and model metadata, model configuration.

Each translates one :class:`~app.serving.v2.service.InferenceService` call. Health answers follow the protocol:
200 for true, 400 for false, empty bodies. Errors raised here get the protocol's ``{"error": "..."}`` body from
the service's one error handler (:func:`app.serving.errors.install_error_handlers`), as every path under
``/v2``. Inference itself is a raw ASGI door (:mod:`app.serving.v2.rest_infer`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.serving.v2.rest import model_metadata_json, server_metadata_json
from app.serving.v2.schemas import ModelConfigBody, ModelMetadataBody, ServerMetadataBody, V2ErrorBody
from app.serving.v2.service import InferenceService

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": V2ErrorBody, "description": "no such model, or no such version of it"},
    503: {"model": V2ErrorBody, "description": "the model is loading (Retry-After) or failed to load"},
}
_HEALTH: dict[int | str, dict[str, Any]] = {
    200: {"description": "true (empty body)", "content": {}},
    400: {"description": "false (empty body)", "content": {}},
}

router = APIRouter(prefix="/v2", tags=["v2"])


def _service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.v2
    return service


def _health(verdict: bool) -> Response:
    return Response(status_code=200 if verdict else 400)


@router.get("", response_model=ServerMetadataBody)
async def server_metadata(request: Request) -> JSONResponse:
    """The server's name, version and the protocol extensions it serves."""
    return JSONResponse(server_metadata_json(_service(request).server_metadata()))


@router.get("/health/live", response_class=Response, responses=_HEALTH)
async def server_live() -> Response:
    """200 while the process runs."""
    return _health(True)


@router.get("/health/ready", response_class=Response, responses=_HEALTH)
async def server_ready(request: Request) -> Response:
    """200 when ``/readyz`` is: every model has finished loading and one is ready (strict mode: none failed)."""
    return _health(_service(request).server_ready())


@router.get("/models/{name}", response_model=ModelMetadataBody, responses=_ERRORS)
async def model_metadata(request: Request, name: str) -> JSONResponse:
    """The model's version, inputs, outputs and how to prepare its ``input`` tensor."""
    return JSONResponse(model_metadata_json(_service(request).model_metadata(name, None)))


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadataBody, responses=_ERRORS)
async def model_version_metadata(request: Request, name: str, version: str) -> JSONResponse:
    """As ``GET /v2/models/{name}``, for the model's one version."""
    return JSONResponse(model_metadata_json(_service(request).model_metadata(name, version)))


@router.get("/models/{name}/ready", response_class=Response, responses={**_HEALTH, 404: _ERRORS[404]})
async def model_ready(request: Request, name: str) -> Response:
    """200 when the model serves; 400 while it loads, or when it failed."""
    return _health(_service(request).model_ready(name, None))


@router.get(
    "/models/{name}/versions/{version}/ready", response_class=Response, responses={**_HEALTH, 404: _ERRORS[404]}
)
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    """As ``GET /v2/models/{name}/ready``, for the model's one version."""
    return _health(_service(request).model_ready(name, version))


@router.get("/models/{name}/config", response_model=ModelConfigBody, responses=_ERRORS)
async def model_config(request: Request, name: str) -> JSONResponse:
    """Triton's model configuration extension: batch limit, inputs, outputs, dynamic batching."""
    return JSONResponse(_service(request).model_config(name, None))


@router.get("/models/{name}/versions/{version}/config", response_model=ModelConfigBody, responses=_ERRORS)
async def model_version_config(request: Request, name: str, version: str) -> JSONResponse:
    """As ``GET /v2/models/{name}/config``, for the model's one version."""
    return JSONResponse(_service(request).model_config(name, version))
