"""uvicorn's httptools protocol with the limits a server facing the network needs, and JSON for its errors.

uvicorn accepts a request line and headers of any size and number, and a connection that never finishes
its headers is never closed (its keep-alive timer starts only after a first answer). This protocol:

- answers 431 and closes when a request has more than ``max_headers`` header fields or more than
  ``max_header_bytes`` bytes of them (names, values and the target URL counted together);
- answers 408 and closes when a request's headers are not complete ``header_timeout_s`` after the
  connection opened or the request's first byte arrived;
- answers malformed HTTP with 400 and the service's JSON error body instead of uvicorn's plain text;
- answers a connection's ``max_requests`` th request with ``Connection: close`` and closes it after (nginx's
  ``keepalive_requests``): the kernel hands a burst of new connections to whichever worker accepts first, and a
  worker that was replaced gets none of the connections that moved to the others, so only reconnects spread
  long-lived clients over the workers.

The limits come from :class:`app.config.Settings` through :func:`protocol_class`. Where the HTTP protocol is
not foldserve's (a Ray replica's server is Ray's uvicorn), :class:`HeaderLimits` applies the same header rule
(:func:`header_excess`) to the parsed request before the app sees it, with the same answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.serving.errors import error_body

__all__ = ["HeaderLimits", "LimitedHttpToolsProtocol", "header_excess", "protocol_class"]


def header_excess(fields: int, size: int, max_headers: int, max_header_bytes: int) -> str | None:
    """Why a request's headers are refused (431), or None: the one header rule of every HTTP server of foldserve.

    Args:
        fields: header fields counted so far.
        size: bytes of the target URL and of every field's name and value so far.
        max_headers: most header fields allowed.
        max_header_bytes: most bytes allowed.
    """
    if fields > max_headers:
        return f"more than {max_headers} header fields"
    if size > max_header_bytes:
        return f"the request line and headers are longer than {max_header_bytes} bytes"
    return None


class _HeadersTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into HttpParserCallbackError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with header-size, header-count and header-time limits."""

    max_headers = 100
    max_header_bytes = 32 * 1024
    header_timeout_s = 10.0
    max_requests = 0  # 0: no limit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_count = 0
        self._header_bytes = 0
        self._too_large: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._requests = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._too_large is not None:
                self._refuse(431, "headers_too_large", self._too_large)
            else:
                self._refuse(400, "bad_http", "invalid HTTP request")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = self._header_bytes = 0
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
        self._requests += 1
        if self.max_requests and self._requests >= self.max_requests and self.cycle is not None:
            self.cycle.keep_alive = False  # its answer says Connection: close, then uvicorn closes the connection

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_http", msg)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        self._too_large = header_excess(self._header_count, self._header_bytes, self.max_headers, self.max_header_bytes)
        if self._too_large is not None:
            raise _HeadersTooLarge

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._refuse(
                408, "header_timeout", f"the request's headers did not arrive within {self.header_timeout_s:g} s"
            )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer with the service's JSON error body and close the connection."""
        self._disarm_header_timer()
        if self.transport.is_closing():
            return
        body = orjson.dumps(error_body(code, message))
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        head.extend(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def protocol_class(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class with the limits of ``settings``."""
    return type(
        "FoldServeHttpProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_headers": settings.max_headers,
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout_s": settings.header_timeout_s,
            "max_requests": settings.max_requests_per_connection,
        },
    )


class HeaderLimits:
    """ASGI: :func:`header_excess` on the parsed request, for a server that runs another HTTP protocol.

    A request over the limits gets the answer :class:`LimitedHttpToolsProtocol` gives it (431, the service's JSON
    body, the connection closed) without reaching ``app``. What only a protocol can do, stop reading headers
    that never end or that arrive too slowly, stays with the server in front.

    Args:
        app: the application.
        settings: ``max_headers`` and ``max_header_bytes``.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_headers, self.max_header_bytes = settings.max_headers, settings.max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            excess = header_excess(len(scope["headers"]), _header_size(scope), self.max_headers, self.max_header_bytes)
            if excess is not None:
                body = orjson.dumps(error_body("headers_too_large", excess))
                headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
                await send(
                    {"type": "http.response.start", "status": 431, "headers": [*headers, (b"connection", b"close")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _header_size(scope: Scope) -> int:
    """What :class:`LimitedHttpToolsProtocol` counts: the target URL, and each field's name and value."""
    target = len(scope.get("raw_path") or scope["path"].encode())
    if scope.get("query_string"):
        target += 1 + len(scope["query_string"])
    return target + sum(len(name) + len(value) for name, value in scope["headers"])
