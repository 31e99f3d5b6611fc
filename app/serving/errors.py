"""The errors the service answers with, and the one place that maps them to HTTP responses.

Every answer that is not a success has the body ``{"error": {"code": ..., "message": ...}}``::

    ServingError (500 internal)
    ├── BadRequest (400 bad_request)
    │   ├── InvalidImage (400 invalid_image)
    │   │   └── ImageAspectRatio (400 image_aspect_ratio)
    │   └── LoadFailed (400 load_failed: a model repository load, as Triton answers it)
    ├── Unauthorized (401 unauthorized, with WWW-Authenticate: Bearer)
    ├── Forbidden (403 forbidden)
    ├── ModelNotFound (404 model_not_found)
    ├── PayloadTooLarge (413 payload_too_large)
    │   ├── BodyTooLarge (413 body_too_large)
    │   ├── TooManyImages (413 too_many_images)
    │   ├── ImageTooLarge (413 image_too_large)
    │   └── TooManyPixels (413 too_many_pixels)
    ├── BodyTimeout (408 body_timeout)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── InvalidParameter (422 invalid_parameter)
    ├── ClientDisconnected (499, nothing is sent: the client went away)
    ├── Unavailable (503 unavailable, with Retry-After)
    │   ├── QueueFull (503 queue_full)
    │   ├── Overloaded (503 overloaded)
    │   └── ModelNotReady (503 model_not_ready)
    ├── ModelFailed (503 model_failed, no Retry-After: it will not load by itself)
    └── DeadlineExceeded (504 deadline_exceeded)

FastAPI's own validation errors become ``InvalidParameter`` answers and Starlette's HTTP errors (unknown
path, wrong method) keep their status with this body. Anything else is a bug: it is logged with its
traceback and the client gets a generic 500 that reveals nothing.

Under ``/v2`` (the Open Inference Protocol) the same errors keep their status but have the protocol's body,
``{"error": "<message>"}`` (:func:`v2_error_body`); the handlers below choose by the path, so every v2 route,
and an unknown path or wrong method under ``/v2``, answers in the protocol's shape.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

__all__ = [
    "BadRequest",
    "BodyTimeout",
    "BodyTooLarge",
    "ClientDisconnected",
    "DeadlineExceeded",
    "Forbidden",
    "ImageAspectRatio",
    "ImageTooLarge",
    "InvalidImage",
    "InvalidParameter",
    "LoadFailed",
    "ModelFailed",
    "ModelNotFound",
    "ModelNotReady",
    "Overloaded",
    "PayloadTooLarge",
    "QueueFull",
    "ServingError",
    "TooManyImages",
    "TooManyPixels",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "error_body",
    "error_response",
    "install_error_handlers",
    "is_v2_path",
    "v2_error_body",
]

V2_PREFIX = "/v2"
"""Where the Open Inference Protocol's routes live, whose errors have its own body."""

logger = logging.getLogger(__name__)


class ServingError(Exception):
    """Base of every error the service answers with; ``status_code`` and ``code`` say how."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServingError):
    status_code = 400
    code = "bad_request"


class InvalidImage(BadRequest):
    code = "invalid_image"


class ImageAspectRatio(InvalidImage):
    code = "image_aspect_ratio"


class LoadFailed(BadRequest):
    """A model repository load failed: the folder is broken or misses verification (the message says why)."""

    code = "load_failed"


class Unauthorized(ServingError):
    """No bearer token, or not the right one."""

    status_code = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ServingError):
    status_code = 403
    code = "forbidden"


class ModelNotFound(ServingError):
    status_code = 404
    code = "model_not_found"


class PayloadTooLarge(ServingError):
    status_code = 413
    code = "payload_too_large"


class BodyTooLarge(PayloadTooLarge):
    code = "body_too_large"


class TooManyImages(PayloadTooLarge):
    code = "too_many_images"


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"


class TooManyPixels(PayloadTooLarge):
    code = "too_many_pixels"


class BodyTimeout(ServingError):
    """The body did not arrive in time (the request's deadline, or the least upload rate)."""

    status_code = 408
    code = "body_timeout"


class ClientDisconnected(ServingError):
    """The client closed the connection before its answer: counted as 499 (as nginx does), never answered."""

    status_code = 499
    code = "client_disconnected"


class UnsupportedMediaType(ServingError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidParameter(ServingError):
    status_code = 422
    code = "invalid_parameter"


class Unavailable(ServingError):
    """The service cannot answer now but may later: sent with ``Retry-After``."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class QueueFull(Unavailable):
    code = "queue_full"


class Overloaded(Unavailable):
    """The process holds as many request bytes, or decodes as many images, as it may."""

    code = "overloaded"


class ModelNotReady(Unavailable):
    code = "model_not_ready"


class ModelFailed(ServingError):
    """The model failed to load (the message says why); retrying will not help until an operator acts."""

    status_code = 503
    code = "model_failed"


class DeadlineExceeded(ServingError):
    status_code = 504
    code = "deadline_exceeded"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error answer."""
    return {"error": {"code": code, "message": message}}


def v2_error_body(exc: ServingError) -> bytes:
    """The Open Inference Protocol's body for ``exc``: ``{"error": "<message>"}``."""
    return orjson.dumps({"error": exc.message})


def is_v2_path(path: str) -> bool:
    """Whether ``path`` (without the root path) is one of the Open Inference Protocol's."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_response(exc: ServingError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, extra headers and JSON body of the answer to ``exc``, for front doors that speak raw ASGI."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in exc.headers().items()]
    return exc.status_code, headers, orjson.dumps(error_body(exc.code, exc.message))


async def _serving_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServingError)
    return _answer(request, exc.status_code, exc.code, exc.message, exc.headers())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
    )
    return _answer(request, 422, InvalidParameter.code, problems or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else "http_error"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405 and headers and "Allow" in headers:
        headers["Allow"] = _allowed_methods(request) or headers["Allow"]
    return _answer(request, exc.status_code, code, str(exc.detail), headers)


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document gives the request's path. Starlette's 405 names only the methods of the
    first route at that path, though a path may have several routes, one per method (and hot routes beside)."""
    path = _route_path(request)
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    methods = {
        method.upper() for template, item in paths.items() if compile_path(template)[0].match(path) for method in item
    }
    return ", ".join(sorted(methods))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error while serving %s %s", request.method, request.url.path, exc_info=exc)
    return _answer(request, 500, ServingError.code, "internal server error")


def _answer(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    if is_v2_path(_route_path(request)):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _route_path(request: Request) -> str:
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer of ``app`` use the ``{"error": {...}}`` body (under ``/v2``: ``{"error": "..."}``)."""
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
