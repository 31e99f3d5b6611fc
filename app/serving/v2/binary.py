"""Bytes on the wire: Triton's binary tensor data extension and the BYTES element layout.

A REST body that carries binary tensors is a JSON header of ``Inference-Header-Content-Length`` bytes followed
by the tensors' bytes, one after the other in the order of the JSON's inputs (or outputs), each as long as its
``binary_data_size`` parameter says. BYTES elements, there and in gRPC's raw contents, are each a 4-byte
little-endian unsigned length followed by that many bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from app.serving.errors import BadRequest

__all__ = [
    "INFERENCE_HEADER_CONTENT_LENGTH",
    "deserialize_bytes_elements",
    "serialize_bytes_elements",
    "split_body",
]

INFERENCE_HEADER_CONTENT_LENGTH = "Inference-Header-Content-Length"
"""The HTTP header giving the JSON header's length when binary tensor data follows it."""

_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    """Split a REST body into its JSON header and the binary tensor data after it.

    Args:
        body: the whole HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header's value as sent, or None when absent
            (then the whole body is JSON).

    Raises:
        BadRequest: the header is not a whole number from 1 to the body's length.
    """
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()):  # refuses signs, inner spaces, decimals and an empty value
        raise BadRequest(f"{INFERENCE_HEADER_CONTENT_LENGTH} must be a whole number of bytes, got {header_length!r}")
    length = int(text)
    if not 1 <= length <= len(body):
        raise BadRequest(
            f"{INFERENCE_HEADER_CONTENT_LENGTH} must be between 1 and the body's {len(body)} bytes, got {length}"
        )
    return view[:length], view[length:]


def serialize_bytes_elements(elements: Sequence[bytes]) -> bytes:
    """The binary layout of BYTES elements: each one's 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def deserialize_bytes_elements(name: str, raw: bytes | memoryview, count: int) -> tuple[bytes, ...]:
    """Read exactly ``count`` length-prefixed BYTES elements that fill ``raw``.

    Args:
        name: the input's name, for error messages.
        raw: the tensor's binary data.
        count: how many elements the input's shape holds.

    Raises:
        BadRequest: a length runs past the data, or the data holds more or fewer than ``count`` elements.
    """
    view = memoryview(raw)
    elements: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(elements) == count:
            raise BadRequest(
                f"input '{name}': {len(view) - offset} bytes follow the {count} BYTES elements its shape holds"
            )
        if offset + _LENGTH.size > len(view):
            raise BadRequest(f"input '{name}': BYTES data ends inside the 4-byte length of element {len(elements)}")
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + size > len(view):
            raise BadRequest(
                f"input '{name}': BYTES element {len(elements)} declares {size} bytes but only "
                f"{len(view) - offset} remain"
            )
        elements.append(bytes(view[offset : offset + size]))
        offset += size
    if len(elements) != count:
        raise BadRequest(f"input '{name}': BYTES data holds {len(elements)} elements, its shape needs {count}")
    return tuple(elements)
