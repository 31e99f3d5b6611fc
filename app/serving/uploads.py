"""Reading the images of a /predict request: multipart ``file`` parts or one raw image body.

The body is read in chunks and refused as soon as it passes the size limit (the ``Content-Length`` header,
when present, is checked first), so a huge upload is never held in memory.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from app.serving.errors import BadRequest, BodyTooLarge, TooManyImages, UnsupportedMediaType

__all__ = ["FILE_FIELD", "read_images"]

FILE_FIELD = "file"
"""Name of the multipart parts that carry images."""

_MAX_OTHER_FIELDS = 16


async def read_images(request: Request, *, max_body_bytes: int, max_images: int) -> list[bytes]:
    """The raw bytes of every image in ``request``, at least one and at most ``max_images``.

    Raises:
        UnsupportedMediaType: the body is neither ``multipart/form-data`` nor ``image/*``.
        BodyTooLarge: the body has more than ``max_body_bytes`` bytes.
        TooManyImages: more than ``max_images`` images.
        BadRequest: malformed multipart data, or no ``file`` part.
    """
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data" and not media_type.startswith("image/"):
        raise UnsupportedMediaType(
            f"content type {media_type or '(none)'!r} is not accepted: send multipart/form-data with "
            f"{FILE_FIELD!r} parts, or one image with an image/* content type"
        )
    body = await _read_body(request, max_body_bytes)
    if media_type.startswith("image/"):
        return [body]
    return await _parse_multipart(request, body, max_images)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"invalid Content-Length header {declared!r}")
        if int(declared) > limit:
            raise BodyTooLarge(f"body of {declared} bytes is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_multipart(request: Request, body: bytes, max_images: int) -> list[bytes]:
    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, replay(), max_files=max_images, max_fields=_MAX_OTHER_FIELDS)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise TooManyImages(f"more than {max_images} images in one request") from None
        raise BadRequest(f"malformed multipart body: {exc.message}") from None
    try:
        parts = form.getlist(FILE_FIELD)
        if not parts:
            raise BadRequest(f"multipart body has no part named {FILE_FIELD!r}")
        if not all(isinstance(part, UploadFile) for part in parts):
            raise BadRequest(f"every {FILE_FIELD!r} part must be a file (with a filename)")
        return [await part.read() for part in parts if isinstance(part, UploadFile)]
    finally:
        await form.close()
