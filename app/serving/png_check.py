"""Whether a PNG's image data is whole: the check that stands between client bytes and torchvision's libpng.

torchvision 0.29's ``decode_png`` survives a libpng error while it reads the header (a RuntimeError), but not
one while it reads the rows: libpng jumps back over the C++ objects built by then and the process dies with a
segmentation fault. A single flipped byte in the compressed pixels ("IDAT: incorrect data check"), a bad
IDAT checksum ("IDAT: CRC error"), too little data or a row with an unknown filter type are such errors.

:func:`rows_readable` answers True only for a PNG whose rows libpng will read without any error: a plain
(non-interlaced) image whose IDAT chunks all have their checksums, whose zlib stream is whole and inflates
to exactly the image's rows, each row with a known filter type, and no EXIF chunk (torchvision parses that
itself). Everything else (interlaced images, odd streams, damaged data) goes to Pillow, which decodes what
it can and refuses the rest with a Python exception. The check inflates the data once more: about a tenth
of the decode's time, nothing beside the decoded rows' size in memory.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["rows_readable"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = struct.Struct(">I4s")
# channels per colour type, and the bit depths each allows (PNG specification, table 11.1)
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_MAX_FILTER = 4  # None, Sub, Up, Average, Paeth
_MAX_LENGTH = 2**31 - 1


def rows_readable(data: bytes) -> bool:
    """Whether libpng reads every row of the PNG ``data`` without an error (see the module docstring)."""
    header = _header(data)
    if header is None:
        return False
    width, height, bit_depth, colour_type = header
    row_bytes = (width * _CHANNELS[colour_type] * bit_depth + 7) // 8
    expected = height * (row_bytes + 1)  # each row: its filter type byte, then its pixels
    compressed = _idat(data)
    if compressed is None:
        return False
    stream = zlib.decompressobj()
    try:
        rows = stream.decompress(compressed, expected + 1)
    except zlib.error:
        return False
    if len(rows) != expected or not stream.eof or stream.unused_data:
        return False
    return max(rows[:: row_bytes + 1]) <= _MAX_FILTER  # each row's first byte (bytes of ints: no copy per row)


def _header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, bit depth, colour type)`` of a plain PNG's IHDR; None for anything else."""
    if len(data) < 33 or not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, bit_depth, colour_type, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if not (1 <= width <= _MAX_LENGTH and 1 <= height <= _MAX_LENGTH):
        return None
    if bit_depth not in _BIT_DEPTHS.get(colour_type, ()) or (compression, filtering, interlace) != (0, 0, 0):
        return None
    return width, height, bit_depth, colour_type


def _idat(data: bytes) -> bytes | None:
    """The joined data of the run of IDAT chunks, each checked against its CRC; None if any chunk up to the one
    after the run runs past the end, a CRC is wrong, there is no IDAT, or there is an EXIF chunk."""
    offset, parts, view = len(_SIGNATURE), [], memoryview(data)
    while offset + 12 <= len(data):
        length, kind = _CHUNK.unpack_from(data, offset)
        end = offset + 12 + length
        if length > _MAX_LENGTH or end > len(data):
            return None
        if kind == b"eXIf":
            return None
        if kind == b"IDAT":
            body = view[offset + 8 : end - 4]
            (crc,) = struct.unpack_from(">I", data, end - 4)
            if zlib.crc32(body, zlib.crc32(kind)) != crc:
                return None
            parts.append(body)
        elif parts:  # the first chunk after the run: libpng reads no further
            return b"".join(parts)
        offset = end
    return None
