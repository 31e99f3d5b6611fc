"""Reading request bodies over raw ASGI: bounded in size, in time and, for the whole process, in memory.

A body is read before the request takes a place in any queue, so a slow client holds a connection and
nothing else. Three rules bound it:

- size: ``Content-Length`` past the limit is refused before a byte is read, and a body that grows past it
  while arriving (chunked) is refused then: 413;
- time: the body must be complete by the request's deadline and, after its first second, arrive at least
  ``min_bytes_per_s`` fast (the deadline for the next chunk moves with every byte received): else 408. Time the
  event loop itself could not read (a check that fires :data:`STALL_S` late: the loop was held up, and bytes may
  be waiting in the socket) is not counted against the client, which gets :data:`GRACE_S` from then on;
- memory: every body byte held by the process counts against one :class:`ByteBudget` until the request
  has decoded its images; a chunk that would pass it gets 503 ``overloaded``. Bytes are counted as they
  arrive, not as declared, so clients that declare large bodies and trickle hold nothing.

A client that goes away mid-body raises :class:`~app.serving.errors.ClientDisconnected`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.types import Receive

from app.serving.errors import (
    BadRequest,
    BodyTimeout,
    BodyTooLarge,
    ClientDisconnected,
    Overloaded,
    TooManyImages,
    UnsupportedMediaType,
)

__all__ = ["FILE_FIELD", "BodyLimits", "ByteBudget", "image_media_type", "read_body", "split_images"]

FILE_FIELD = "file"
"""Name of the multipart parts that carry images."""

GRACE_S = 1.0
"""Seconds a body may take before the least upload rate applies (connection set-up, a slow first packet)."""

STALL_S = 0.25
"""A least-rate check that runs this many seconds after it was due found the event loop held up (a long callback,
the process starved of CPU): the client is not timed out for bytes the server did not read."""


class ByteBudget:
    """Request-body bytes the process holds at once, counted as they arrive and given back per request.

    Args:
        limit: most bytes held at once.
        retry_after_s: the ``Retry-After`` to suggest when it is spent.
    """

    def __init__(self, limit: int, retry_after_s: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 byte, got {limit}")
        self.limit = limit
        self.held = 0
        self.retry_after_s = retry_after_s

    @contextlib.contextmanager
    def hold(self) -> Iterator[list[int]]:
        """A tally for one request: what :func:`read_body` takes into it is given back on exit."""
        tally = [0]
        try:
            yield tally
        finally:
            self.held -= tally[0]

    def take(self, tally: list[int], size: int) -> None:
        """Count ``size`` more bytes for the request that owns ``tally``.

        Raises:
            Overloaded: the process would hold more than ``limit`` bytes.
        """
        if self.held + size > self.limit:
            raise Overloaded(
                f"the server holds {self.held} bytes of request bodies, the most it may hold is {self.limit}",
                retry_after_s=self.retry_after_s,
            )
        self.held += size
        tally[0] += size


@dataclass(frozen=True)
class BodyLimits:
    """How large and how slow a request body may be."""

    max_bytes: int
    min_bytes_per_s: int  # 0: no least rate, only the deadline


async def read_body(
    receive: Receive,
    headers: Headers,
    *,
    limits: BodyLimits,
    deadline: float,
    budget: ByteBudget,
    tally: list[int],
) -> bytes:
    """The whole body of a request.

    Args:
        deadline: the request's deadline on the event loop's clock (``loop.time()``).
        tally: from ``budget.hold()``; the bytes read are counted in it.

    Raises:
        BodyTooLarge: more than ``limits.max_bytes``. BadRequest: an invalid ``Content-Length``.
        BodyTimeout: the body did not arrive by the deadline, or arrived slower than the least rate.
        Overloaded: the process's byte budget is spent. ClientDisconnected: the client went away.
    """
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"invalid Content-Length header {declared!r}")
        if int(declared) > limits.max_bytes:
            raise BodyTooLarge(f"body of {declared} bytes is larger than the limit of {limits.max_bytes} bytes")
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline) as timer:
            least_rate = _LeastRate(loop, timer, started, limits.min_bytes_per_s)
            try:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnected("the client closed the connection while sending its body")
                    chunk: bytes = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > limits.max_bytes:
                            raise BodyTooLarge(f"body is larger than the limit of {limits.max_bytes} bytes")
                        budget.take(tally, len(chunk))
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
                    least_rate.received(size)
            finally:
                least_rate.cancel()
    except TimeoutError:
        seconds = loop.time() - started
        raise BodyTimeout(
            f"the body did not arrive in time: {size} bytes in {seconds:.1f} s (a body must arrive within the "
            f"request's deadline and, after {GRACE_S:g} s, at {limits.min_bytes_per_s} bytes/s or faster)"
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _LeastRate:
    """Ends ``timer`` (an ``asyncio.timeout`` on the request's deadline) when the body falls behind
    ``GRACE_S + received / rate`` seconds from ``started``, not counting time the event loop was held up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timer: asyncio.Timeout, started: float, rate: int) -> None:
        self.loop, self.timer, self.rate = loop, timer, rate
        self.start = started  # moves on past the time the loop was held up
        self.size = 0
        self.handle: asyncio.TimerHandle | None = loop.call_at(self._due(), self._check) if rate > 0 else None

    def _due(self) -> float:
        return self.start + GRACE_S + self.size / self.rate

    def received(self, size: int) -> None:
        self.size = size
        if self.handle is not None:
            self.handle.cancel()
            self.handle = self.loop.call_at(self._due(), self._check)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _check(self) -> None:
        now = self.loop.time()
        if now - self._due() > STALL_S:  # the loop was held up: bytes may be in the socket, unread
            self.start = now - self.size / self.rate
            self.handle = self.loop.call_at(self._due(), self._check)
            return
        self.handle = None
        self.timer.reschedule(now)  # past due: the timer cancels the read and raises TimeoutError


def image_media_type(headers: Headers) -> str:
    """The media type of a body that carries images: ``image/...`` or ``multipart/form-data``.

    Raises:
        UnsupportedMediaType: any other ``Content-Type``, or none.
    """
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data" and not media_type.startswith("image/"):
        raise UnsupportedMediaType(
            f"content type {media_type or '(none)'!r} is not accepted: send multipart/form-data with "
            f"{FILE_FIELD!r} parts, or one image with an image/* content type"
        )
    return media_type


def split_images(headers: Headers, media_type: str, body: bytes, *, max_images: int) -> list[bytes]:
    """The images of a body of ``media_type`` (from :func:`image_media_type`): itself, or its ``file`` parts.

    Raises:
        TooManyImages: more than ``max_images`` images.
        BadRequest: malformed multipart data, or no ``file`` part.
    """
    if media_type.startswith("image/"):
        return [body]
    return _parse_multipart(headers, body, max_images)


def _parse_multipart(headers: Headers, body: bytes, max_images: int) -> list[bytes]:
    """The ``file`` parts of a multipart body, as bytes, in order; any other part is refused.

    A ``file`` part is an image whether or not its disposition names a file: clients differ on that.
    """
    _, options = parse_options_header(headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("malformed multipart body: the content type has no boundary")
    parts: list[tuple[bytes, bytearray]] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        if len(parts) >= max_images:
            raise TooManyImages(f"more than {max_images} images in one request")
        parts.append((b"", bytearray()))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        if header["field"].lower() == b"content-disposition":
            _, disposition = parse_options_header(header["value"])
            parts[-1] = (disposition.get(b"name", b""), parts[-1][1])
        header["field"] = header["value"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    names = sorted({name.decode("latin-1") for name, _ in parts if name != FILE_FIELD.encode()})
    if names:
        raise BadRequest(f"unexpected multipart parts {names[:4]}: send images as parts named {FILE_FIELD!r}")
    if not parts:
        raise BadRequest(f"multipart body has no part named {FILE_FIELD!r}")
    return [bytes(data) for _, data in parts]
