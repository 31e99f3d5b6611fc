"""Raw ASGI plumbing for the inference front doors: query parsing, JSON answers, and request accounting.

The inference routes are the hot path; they are answered by plain ASGI callables (see
:class:`app.serving.app.FoldServeAPI`) rather than through FastAPI's routing, dependency solving, response
validation and middleware stack, which a profile under load showed costing more per request than the
collapsed network itself. Everything a client may get wrong is still checked, and every error has the same
body as the FastAPI routes (:func:`app.serving.errors.encode_error`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.types import Scope, Send

from app.serving.errors import (
    ClientDisconnected,
    InvalidParameter,
    ServingError,
    encode_error,
    error_answer,
    route_path,
)
from app.serving.metrics import RequestClock, ServingMetrics

__all__ = ["JSON", "Exchange", "parse_bool", "parse_int", "query_params", "send_bytes"]

logger = logging.getLogger(__name__)

JSON = b"application/json"

_TRUE = frozenset(("true", "1", "yes", "on", "t", "y"))
_FALSE = frozenset(("false", "0", "no", "off", "f", "n"))


def query_params(scope: Scope) -> dict[str, str]:
    """The query string's parameters; of a repeated name, the last value counts (as in Starlette)."""
    raw: bytes = scope.get("query_string", b"")
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


def parse_bool(params: dict[str, str], name: str, default: bool) -> bool:
    """A boolean query parameter (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``).

    Raises:
        InvalidParameter: any other value.
    """
    value = params.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidParameter(f"query.{name}: must be true or false, got {value!r}")


def parse_int(params: dict[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter between ``low`` and ``high``.

    Raises:
        InvalidParameter: not an integer, or out of range.
    """
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidParameter(f"query.{name}: must be an integer, got {value[:32]!r}") from None
    if not low <= number <= high:
        raise InvalidParameter(f"query.{name}: must be between {low} and {high}, got {number}")
    return number


async def send_bytes(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """Send a whole answer: JSON unless ``headers`` give its ``Content-Type``."""
    raw = [(b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())
    if not headers or "Content-Type" not in headers:
        raw.append((b"content-type", JSON))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Exchange:
    """One request through a front door: answers it, maps errors, and counts it exactly once.

    Use as ``async with Exchange(...) as exchange:``; inside, call :meth:`resolved` once the model and
    variant are known and :meth:`answer` to send the success. Whatever is raised inside is answered as
    :func:`~app.serving.errors.error_answer` says, with the body :func:`~app.serving.errors.encode_error`
    chooses for the path of ``scope``; :class:`ClientDisconnected` is counted as 499 and answered with nothing,
    and a cancellation (the server stopping) is counted and let through.
    """

    def __init__(self, send: Send, metrics: ServingMetrics, protocol: str, scope: Scope | None = None) -> None:
        self._send = send
        self._protocol = protocol
        self._path = "" if scope is None else route_path(scope)
        self.clock = RequestClock(metrics, protocol)
        self._error: ServingError | None = None
        self._status = 500
        self._answering = False  # the 200 has started: an error now cannot be answered any more

    def resolved(self, model: str, variant: str) -> None:
        """Count this request under ``model``'s ``variant`` (the last call wins)."""
        self.clock.resolved(model, variant)

    async def answer(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Send the 200 answer (JSON unless ``headers`` give its ``Content-Type``)."""
        self._status, self._answering = 200, True
        await send_bytes(self._send, 200, body, headers)

    async def __aenter__(self) -> Exchange:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> bool:
        if isinstance(error, ServingError):
            # handled here and never logged: its traceback would keep the frames it passed through alive, and what
            # they held (a refused body's chunks), until the garbage collector finds the cycle: measured, 1.5 MiB
            # a refused upload, 180 MiB for 120 held uploads against an 8 MiB budget
            error.__traceback__ = None
        try:
            if error is None or not isinstance(error, Exception | asyncio.CancelledError):
                return False  # answered; or KeyboardInterrupt and the like: let them through
            if self._answering and isinstance(error, Exception):  # a second answer would be a protocol error
                logger.warning("a %s answer broke off while being sent: %r", self._protocol, error)
                self._status = ClientDisconnected.status_code
                return True
            self._status, self._error = error_answer(error, f"a {self._protocol} request")
            if isinstance(error, asyncio.CancelledError):
                return False
            if not isinstance(error, ClientDisconnected):
                await self._send_error(self._error)
            return True
        finally:
            self.clock.done(self._status, self._error)

    async def _send_error(self, error: ServingError) -> None:
        try:
            await send_bytes(self._send, self._status, encode_error(error, self._path), error.headers())
        except OSError:  # the client went away meanwhile: nothing more to do
            self._status = ClientDisconnected.status_code
