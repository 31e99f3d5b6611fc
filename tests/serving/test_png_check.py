"""PNGs whose rows libpng cannot read never reach torchvision's decoder (an error there is a segfault).

The first case is the input the v2 fuzz test found (tests/serving/v2/test_fuzz_binary.py, an ``image`` BYTES
tensor): an 8x8 gray PNG with one byte of its compressed pixels flipped, which killed the server with
"libpng error: IDAT: incorrect data check". Each damaged PNG must be a 400 ``invalid_image``, decoded by
nothing or by Pillow, in this process.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from app.serving.errors import InvalidImage
from app.serving.images import decode_image
from app.serving.png_check import rows_readable
from app.store import InputSpec
from tests.serving.conftest import digit_png, png

GRAY = InputSpec(channels=1, height=8, width=8, mean=[0.5], std=[0.25])


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def gray_png(rows: bytes, width: int = 8, height: int = 8, *, idat: bytes | None = None, interlace: int = 0) -> bytes:
    """An 8-bit gray PNG of ``rows`` (each row its filter byte and pixels), its chunks' CRCs right."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, interlace)
    body = zlib.compress(rows) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


PIXELS = b"".join(b"\x00" + bytes(range(i * 8, i * 8 + 8)) for i in range(8))


def flipped(data: bytes, index: int) -> bytes:
    damaged = bytearray(data)
    damaged[index] ^= 0xA7
    return bytes(damaged)


FUZZ_INPUT = flipped(digit_png(3, 8), 86)  # 86: inside the zlib stream of the IDAT chunk; the CRC left stale
COMPRESSED = zlib.compress(PIXELS)
DAMAGED = {
    "fuzz: one byte of the pixels flipped (IDAT CRC stale)": FUZZ_INPUT,
    "zlib checksum wrong, IDAT CRC right": gray_png(PIXELS, idat=COMPRESSED[:-1] + bytes([COMPRESSED[-1] ^ 1])),
    "a row's filter type 9": gray_png(b"\x09" + PIXELS[1:]),
    "zlib stream cut short": gray_png(PIXELS, idat=COMPRESSED[:-6]),
    "no IDAT": b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
    + chunk(b"IEND", b""),
}


@pytest.mark.parametrize("data", DAMAGED.values(), ids=DAMAGED.keys())
def test_pngs_libpng_cannot_read_are_invalid_images_not_a_crash(data: bytes) -> None:
    assert not rows_readable(data)
    with pytest.raises(InvalidImage):
        decode_image(data, GRAY, max_pixels=10**6)


def test_a_png_one_row_short_is_left_to_pillow_which_fills_it() -> None:
    """libpng would fail on the missing row (and kill the process); Pillow decodes what is there, as it does for
    the formats only it reads."""
    data = gray_png(PIXELS[:-9])
    assert not rows_readable(data)
    assert decode_image(data, GRAY, max_pixels=10**6).shape == (1, 8, 8)


def encode(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


RNG = np.random.default_rng(0)
WHOLE = {
    "gray": png(RNG.integers(0, 256, (8, 8), dtype=np.uint8)),
    "rgb": png(RNG.integers(0, 256, (8, 11, 3), dtype=np.uint8)),
    "rgba": png(RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8)),
    "palette": encode(Image.fromarray(RNG.integers(0, 256, (8, 8), dtype=np.uint8)).convert("P")),
    "1-bit": encode(Image.fromarray(RNG.integers(0, 2, (8, 13), dtype=np.uint8) * 255).convert("1")),
    "hand-made": gray_png(PIXELS),
}


@pytest.mark.parametrize("data", WHOLE.values(), ids=WHOLE.keys())
def test_whole_pngs_go_to_torchvision_and_decode_as_pillow_does(data: bytes) -> None:
    assert rows_readable(data)
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((8, 8), Image.Resampling.BILINEAR))
    tensor = decode_image(data, GRAY, max_pixels=10**6)
    assert tensor.shape == (1, 8, 8)
    if Image.open(io.BytesIO(data)).size == (8, 8):  # no resizing: the same pixels as Pillow's
        expected = (torch.from_numpy(pillow.astype(np.float32)) / 255 - 0.5) / 0.25
        torch.testing.assert_close(tensor[0], expected, atol=1 / 255 / 0.25 + 1e-6, rtol=0)


def test_sixteen_bit_pngs_go_to_torchvision_at_full_depth() -> None:
    data = png(np.full((8, 8), 1234 * 50, dtype=np.uint16))
    assert rows_readable(data)
    expected = torch.full((1, 8, 8), (1234 * 50 / 65535 - 0.5) / 0.25)
    torch.testing.assert_close(decode_image(data, GRAY, max_pixels=10**6), expected)


def test_interlaced_pngs_are_left_to_pillow() -> None:
    data = gray_png(b"\x00\xcc", width=1, height=1, interlace=1)  # Adam7: one pixel, all in the first pass
    assert not rows_readable(data)
    torch.testing.assert_close(decode_image(data, GRAY, max_pixels=10**6), torch.full((1, 8, 8), (0.8 - 0.5) / 0.25))
