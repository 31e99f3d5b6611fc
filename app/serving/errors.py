"""The errors the service answers with, and the one place that maps them to HTTP responses.

Every answer that is not a success has the body ``{"error": {"code": ..., "message": ...}}``::

    ServingError (500 internal)
    ├── BadRequest (400 bad_request)
    │   ├── InvalidImage (400 invalid_image)
    │   │   └── ImageAspectRatio (400 image_aspect_ratio)
    │   └── LoadFailed (400 load_failed: a model repository load, as Triton answers it)
    ├── Unauthorized (401 unauthorized, with WWW-Authenticate: Bearer)
    ├── Forbidden (403 forbidden)
    ├── HTTPError (Starlette's status, http_error: a wrong method, ...)
    │   └── PathNotFound (404 not_found: no such path)
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
traceback and the client gets a generic 500 that reveals nothing. :func:`error_answer` is that one mapping,
for every door: the raw ASGI doors (:class:`app.serving.asgi.Exchange`), the gRPC servicer and the FastAPI
handlers installed here.

Under ``/v2`` (the Open Inference Protocol) the same errors keep their status but have the protocol's body,
``{"error": "<message>"}``; :func:`encode_error` chooses by the path, so every v2 route, and an unknown path
or wrong method under ``/v2``, answers in the protocol's shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import Scope

__all__ = [
    "BadRequest",
    "BodyTimeout",
    "BodyTooLarge",
    "ClientDisconnected",
    "DeadlineExceeded",
    "Forbidden",
    "HTTPError",
    "ImageAspectRatio",
    "ImageTooLarge",
    "InvalidImage",
    "InvalidParameter",
    "LoadFailed",
    "ModelFailed",
    "ModelNotFound",
    "ModelNotReady",
    "Overloaded",
    "PathNotFound",
    "PayloadTooLarge",
    "QueueFull",
    "ServingError",
    "TooManyImages",
    "TooManyPixels",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "encode_error",
    "error_answer",
    "error_body",
    "install_error_handlers",
    "is_v2_path",
    "route_path",
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
    """The JSON body of every error answer outside ``/v2``."""
    return {"error": {"code": code, "message": message}}


def route_path(scope: Scope) -> str:
    """The request's path inside the application (without the root path it is mounted at)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def is_v2_path(path: str) -> bool:
    """Whether ``path`` (without the root path) is one of the Open Inference Protocol's."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def encode_error(error: ServingError, path: str) -> bytes:
    """The body of the answer to ``error`` at ``path``: under ``/v2`` the protocol's ``{"error": "<message>"}``,
    elsewhere ``{"error": {"code": ..., "message": ...}}``."""
    if is_v2_path(path):
        return orjson.dumps({"error": error.message})
    return orjson.dumps(error_body(error.code, error.message))


class HTTPError(ServingError):
    """An error of the HTTP layer (an unknown path, a wrong method): answered with Starlette's status."""

    code = "http_error"

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self._headers = dict(headers or {})

    def headers(self) -> dict[str, str]:
        return dict(self._headers)


class PathNotFound(HTTPError):
    code = "not_found"


def error_answer(exc: BaseException, where: str) -> tuple[int, ServingError]:
    """The status and error that answer ``exc``, whatever door it reached (``/predict``, v2 REST, gRPC, the
    FastAPI routes).

    - a :class:`ServingError`: its own status;
    - FastAPI's validation error: 422 ``invalid_parameter``, naming each invalid field;
    - Starlette's HTTP error: its status (``not_found``, or ``http_error``) and headers;
    - cancellation (the server stopped the request, at shutdown past the drain time): 503;
    - anything else is a bug: logged with its traceback (``where`` says what was served), and a 500 that reveals
      nothing.
    """
    if isinstance(exc, ServingError):
        return exc.status_code, exc
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return InvalidParameter.status_code, InvalidParameter(problems or "invalid request")
    if isinstance(exc, StarletteHTTPException):
        kind = PathNotFound if exc.status_code == 404 else HTTPError
        return exc.status_code, kind(str(exc.detail), exc.headers)
    if isinstance(exc, asyncio.CancelledError):
        return Unavailable.status_code, Unavailable("the server stopped the request")
    logger.exception("unhandled error in %s", where, exc_info=exc)
    return ServingError.status_code, ServingError("internal server error")


async def _answer(request: Request, exc: Exception) -> Response:
    status, error = error_answer(exc, f"{request.method} {request.url.path}")
    headers = error.headers()
    if status == 405 and "Allow" in headers:
        headers["Allow"] = _allowed_methods(request) or headers["Allow"]
    body = encode_error(error, route_path(request.scope))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document gives the request's path. Starlette's 405 names only the methods of the
    first route at that path, though a path may have several routes, one per method (and hot routes beside)."""
    path = route_path(request.scope)
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    methods = {
        method.upper() for template, item in paths.items() if compile_path(template)[0].match(path) for method in item
    }
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer of ``app`` come from :func:`error_answer`, with the body of :func:`encode_error`."""
    for kind in (ServingError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _answer)
