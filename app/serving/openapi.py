"""The OpenAPI document: FastAPI's for its own routes, plus the inference routes that are plain ASGI callables.

The inference operations are written here from the same pydantic schemas and limits the handlers use, with
every status they can answer and the real error body, so that a generated client gets them right.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.serving.bodies import FILE_FIELD
from app.serving.errors import is_v2_path
from app.serving.predict import MAX_MODEL_NAME, MAX_TOP_K
from app.serving.repository import RepositoryModel
from app.serving.schemas import ErrorBody, PredictResponse
from app.serving.v2.binary import INFERENCE_HEADER_CONTENT_LENGTH
from app.serving.v2.rest_infer import INFER_PATHS
from app.serving.v2.schemas import InferRequestBody, InferResponseBody, V2ErrorBody

__all__ = ["install_openapi"]

_ERRORS = {
    "400": "a malformed body or image, or an image's aspect ratio past the limit",
    "404": "no such model",
    "408": "the body did not arrive within the deadline or at the least upload rate",
    "413": "the body, an image, the images together, or their number past a limit",
    "415": "a content type other than multipart/form-data or image/*",
    "422": "an invalid query parameter",
    "503": "the model is loading or failed, its queue is full, or the server is overloaded (Retry-After)",
    "504": "no answer within the request deadline",
}
_V2_ERRORS = {
    "400": "not a valid inference request: JSON, binary header, input name, datatype, shape, data size, a NaN or "
    "infinite value, an unknown output or parameter, an unreadable image",
    "404": "no such model, or no such version of it",
    "408": "the body did not arrive within the deadline or at the least upload rate",
    "413": "the body, the tensor elements, an image or the images together, or their number, past a limit",
    "503": "the model is loading, its queue is full, or the server is overloaded (Retry-After); or it failed to load",
    "504": "no answer within the request deadline",
}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (served at ``/openapi.json``) include the inference routes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            schema["paths"]["/predict"] = {"post": _predict_operation(app, components)}
            for path in INFER_PATHS:
                schema["paths"][path] = {"post": _v2_infer_operation(app, components, path)}
            schema["paths"]["/v2/repository/index"] = {
                method: _index_operation(method, components) for method in ("get", "post")
            }
            _document_errors(schema, components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_ROUTE_ERRORS = {
    ("/models/{name}", "get"): {"404": "no such model"},
    ("/readyz", "get"): {"503": "not ready (Retry-After)"},
}
"""Errors the FastAPI routes answer besides their 200, documented with the service's error body."""


def _document_errors(schema: dict[str, Any], components: dict[str, Any]) -> None:
    """Give every FastAPI operation the service's real error body: FastAPI documents its own
    ``{"detail": ...}`` for 422, which the service never sends (its handlers answer ``{"error": ...}``, under
    ``/v2`` the protocol's ``{"error": "..."}``)."""
    service_error = {"application/json": {"schema": _ref(ErrorBody, components)}}
    v2_error = {"application/json": {"schema": _ref(V2ErrorBody, components)}}
    for path, operations in schema["paths"].items():
        error = v2_error if is_v2_path(path) else service_error
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "an invalid parameter", "content": error}
            for status, text in _ROUTE_ERRORS.get((path, method), {}).items():
                responses[status] = {"description": text, "content": error}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _predict_operation(app: FastAPI, components: dict[str, Any]) -> dict[str, Any]:
    settings = app.state.settings
    error = {"application/json": {"schema": _ref(ErrorBody, components)}}
    responses: dict[str, Any] = {
        "200": {"description": "the ranked classes of every image", "content": _json(PredictResponse, components)}
    }
    responses.update({status: {"description": text, "content": error} for status, text in _ERRORS.items()})
    responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    binary = {"type": "string", "format": "binary", "maxLength": settings.max_body_bytes}
    return {
        "tags": ["predict"],
        "summary": "Classify images",
        "description": "Classify one or more images: multipart `file` parts, or one raw body with an image "
        "content type. `collapsed=true` answers with the simplified network, `false` with the original.",
        "operationId": "predict",
        "parameters": [
            _query(
                "model", {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_NAME}, "default: the default model"
            ),
            _query(
                "collapsed", {"type": "boolean", "default": True}, "true: the simplified network; false: the original"
            ),
            _query(
                "top_k",
                {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 3},
                "classes listed per image; more than the model has lists them all",
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            FILE_FIELD: {
                                "type": "array",
                                "items": binary,
                                "minItems": 1,
                                "maxItems": settings.max_images_per_request,
                            }
                        },
                        "required": [FILE_FIELD],
                        "additionalProperties": False,
                    },
                    "encoding": {FILE_FIELD: {"contentType": "image/*"}},
                },
                "image/*": {"schema": binary},
            },
        },
        "responses": responses,
    }


def _v2_infer_operation(app: FastAPI, components: dict[str, Any], path: str) -> dict[str, Any]:
    settings = app.state.settings
    error = {"application/json": {"schema": _ref(V2ErrorBody, components)}}
    length = {"schema": {"type": "integer", "minimum": 1}, "description": "bytes of the JSON header"}
    binary = {"schema": {"type": "string", "format": "binary", "maxLength": settings.max_body_bytes}}
    responses: dict[str, Any] = {
        "200": {
            "description": "the outputs asked for; as binary data after the JSON header when the request asked so",
            "content": {**_json(InferResponseBody, components), "application/octet-stream": binary},
            "headers": {INFERENCE_HEADER_CONTENT_LENGTH: length},
        }
    }
    responses.update({status: {"description": text, "content": error} for status, text in _V2_ERRORS.items()})
    responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    parameters = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if "{version}" in path:
        parameters.append({"name": "version", "in": "path", "required": True, "schema": {"type": "string"}})
    parameters.append({"name": INFERENCE_HEADER_CONTENT_LENGTH, "in": "header", "required": False, **length})
    return {
        "tags": ["v2"],
        "summary": "Infer (Open Inference Protocol)",
        "description": "One input: `input`, FP32 [N, C, H, W] normalised as the model metadata says, or `image`, "
        f"BYTES [N] of encoded images; N from 1 to {settings.max_images_per_request}. Outputs `logits` and "
        "`probabilities` (FP32 [N, K]), or their top k with the `classification` parameter. The request parameter "
        "`collapsed` (default true) picks the simplified network, false the original; the response parameter "
        "`variant` says which answered. With Triton's binary tensor data extension the body is a JSON header of "
        f"`{INFERENCE_HEADER_CONTENT_LENGTH}` bytes followed by the inputs' bytes.",
        "operationId": "v2_infer_version" if "{version}" in path else "v2_infer",
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {**_json(InferRequestBody, components), "application/octet-stream": binary},
        },
        "responses": responses,
    }


def _index_operation(method: str, components: dict[str, Any]) -> dict[str, Any]:
    listing = {"type": "array", "items": _ref(RepositoryModel, components)}
    return {
        "tags": ["repository"],
        "summary": "Every model folder of the store, with its state",
        "operationId": f"repository_index_{method}",
        "responses": {"200": {"description": "the index", "content": {"application/json": {"schema": listing}}}},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _json(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model, components)}}


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
