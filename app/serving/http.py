"""uvicorn's httptools protocol with the limits a server facing the network needs, and JSON for its errors.

uvicorn accepts a request line and headers of any size and number, and a connection that never finishes
its headers is never closed (its keep-alive timer starts only after a first answer). This protocol:

- answers 431 and closes when a request has more than ``max_headers`` header fields or more than
  ``max_header_bytes`` bytes of them (names, values and the target URL counted together);
- answers 408 and closes when a request's headers are not complete ``header_timeout_s`` after the
  connection opened or the request's first byte arrived;
- answers malformed HTTP with 400 and the service's JSON error body instead of uvicorn's plain text.

The limits come from :class:`app.config.Settings` through :func:`protocol_class`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.serving.errors import error_body

__all__ = ["LimitedHttpToolsProtocol", "protocol_class"]


class _HeadersTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into HttpParserCallbackError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with header-size, header-count and header-time limits."""

    max_headers = 100
    max_header_bytes = 32 * 1024
    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_count = 0
        self._header_bytes = 0
        self._too_large: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None

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
        if self._header_count > self.max_headers:
            self._too_large = f"more than {self.max_headers} header fields"
            raise _HeadersTooLarge
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_http", msg)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._too_large = f"the request line and headers are longer than {self.max_header_bytes} bytes"
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
        },
    )
