"""Turning uploaded image bytes into the tensor a model expects.

Two steps, so that nothing is decoded before everything is checked:

1. :func:`probe_images` reads each image's dimensions from its header (PNG and JPEG by hand, in
   microseconds; other formats through Pillow's lazy ``Image.open``) and refuses images with no pixels,
   more than ``max_pixels`` pixels, or an aspect ratio past ``max_aspect_ratio``. It returns the pixel count,
   which the caller holds against a per-request budget and uses to decide where decoding runs.
2. :func:`decode_checked` decodes them: JPEG, and PNG whose rows libpng reads without an error
   (:func:`~app.serving.png_check.rows_readable`: an error there kills torchvision 0.29's decoder, and the
   process with it), with torchvision's libjpeg/libpng decoders straight into uint8 (or uint16) tensors of
   the model's channels, everything else through Pillow. EXIF orientation is
   applied, the image is brought to the model's input size as its manifest says (the whole image resized,
   or the shorter side resized then a centre crop; bilinear, antialiased, still 8-bit) and normalised with
   the manifest's mean and std. Grayscale, RGB, RGBA, palette and 16-bit inputs all work; alpha is dropped
   unless the model takes it.

torchvision 0.29 deprecates the Python wrappers of its decoders (a warning on every call) in favour of
TorchCodec, so the registered ``torch.ops.image`` operators are called directly; where they are missing,
Pillow decodes everything.

Everything here is synchronous and releases the GIL in the decoders: the data plane runs small images on
the event loop and large ones in its decode pool.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode

from app.serving.errors import DeadlineExceeded, ImageAspectRatio, ImageTooLarge, InvalidImage
from app.serving.png_check import rows_readable
from app.store import InputSpec

__all__ = ["ImageLimits", "decode_checked", "decode_image", "decode_images", "probe_images"]

logger = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the dimensions
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_READ_MODES = {1: ImageReadMode.GRAY, 2: ImageReadMode.GRAY_ALPHA, 3: ImageReadMode.RGB, 4: ImageReadMode.RGB_ALPHA}
_PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class ImageLimits:
    """What one image may be, checked from its header before it is decoded."""

    max_pixels: int  # width x height of one image
    max_aspect_ratio: float = float("inf")  # longer side over shorter side


def probe_images(blobs: list[bytes], limits: ImageLimits) -> int:
    """Check every image's header against ``limits``; returns their pixels in all, decoding nothing.

    Raises:
        InvalidImage: an image is empty, not an image, or has no pixels (the message says which one).
        ImageTooLarge: an image has more than ``limits.max_pixels`` pixels.
        ImageAspectRatio: an image is longer than ``limits.max_aspect_ratio`` times its width, or wider.
    """
    total = 0
    for i, blob in enumerate(blobs):
        with _naming(i, len(blobs)):
            width, height = _dimensions(blob)
            _check(width, height, limits)
        total += width * height
    return total


def decode_images(blobs: list[bytes], spec: InputSpec, *, max_pixels: int) -> torch.Tensor:
    """Decode every image of one request into a ``[N, C, H, W]`` float32 batch (headers checked first).

    Raises:
        InvalidImage: an image is empty, unreadable, truncated or has no pixels (the message says which).
        ImageTooLarge: an image has more than ``max_pixels`` pixels.
    """
    probe_images(blobs, ImageLimits(max_pixels))
    return decode_checked(blobs, spec)


def decode_checked(blobs: list[bytes], spec: InputSpec, *, cancelled: Callable[[], bool] | None = None) -> torch.Tensor:
    """Decode images whose headers :func:`probe_images` passed into a ``[N, C, H, W]`` float32 batch.

    Args:
        cancelled: asked before each image; once it answers True (the request's deadline passed), decoding
            stops with :class:`~app.serving.errors.DeadlineExceeded`.

    Raises:
        InvalidImage: an image is unreadable or truncated (the message says which).
    """
    tensors = []
    for i, blob in enumerate(blobs):
        if cancelled is not None and cancelled():
            raise DeadlineExceeded(f"the deadline passed while decoding image {i} of {len(blobs)}")
        with _naming(i, len(blobs)):
            tensors.append(_decode_unit(blob, spec))
    return _normalise(torch.stack(tensors), spec)


def decode_image(data: bytes, spec: InputSpec, *, max_pixels: int) -> torch.Tensor:
    """Decode one image into a normalised ``[C, H, W]`` float32 tensor of the model's input size."""
    return decode_images([data], spec, max_pixels=max_pixels)[0]


class _naming:
    """Prefix the message of an image error with the image's position, when a request has several."""

    def __init__(self, index: int, count: int) -> None:
        self.index, self.count = index, count

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if self.count > 1 and isinstance(error, InvalidImage | ImageTooLarge):
            raise type(error)(f"image {self.index}: {error.message}") from None


def _dimensions(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the header alone."""
    if not data:
        raise InvalidImage("empty image")
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidImage("not an image: a PNG signature without an IHDR header")
        width, height = struct.unpack_from(">II", data, 16)
        return width, height
    if data.startswith(_JPEG_SOI):
        return _jpeg_dimensions(data)
    image = _pillow_open(data)
    return image.size


def _jpeg_dimensions(data: bytes) -> tuple[int, int]:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise InvalidImage("not an image: a JPEG with a corrupt marker sequence")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in _JPEG_SOF:
            if offset + 9 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, offset + 5)
            return width, height
        if length < 2:
            raise InvalidImage("not an image: a JPEG segment with a length below 2")
        offset += 2 + length
    raise InvalidImage("not an image: a JPEG whose header ends before its frame size (truncated)")


def _check(width: int, height: int, limits: ImageLimits) -> None:
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, the limit is {limits.max_pixels}")
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise ImageAspectRatio(
            f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1; the limit is {limits.max_aspect_ratio:g}:1"
        )


def _pillow_open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own, far higher, limit: still the client's image
        raise ImageTooLarge(f"image is larger than Pillow accepts ({exc})") from None
    except Exception as exc:  # Pillow raises many kinds of errors for garbage headers
        raise InvalidImage(f"not an image Pillow can read: {type(exc).__name__}") from None


def _torchvision_ops() -> tuple[object, object] | None:
    try:
        import torchvision.io.image  # noqa: F401  (loads the extension that registers torch.ops.image)

        return torch.ops.image.decode_png, torch.ops.image.decode_jpeg
    except (ImportError, AttributeError, RuntimeError):  # a torchvision built without its image extension
        logger.warning("torchvision's image decoders are missing: every image is decoded by Pillow")
        return None


_TORCHVISION = _torchvision_ops()


def _decode_unit(data: bytes, spec: InputSpec) -> torch.Tensor:
    """The image as float32 ``[C, H, W]`` in [0, 1], at the model's input size."""
    if _TORCHVISION is not None and (data.startswith(_JPEG_SOI) or rows_readable(data)):
        pixels = _decode_torchvision(data, spec.channels)
    else:
        pixels = _decode_pillow(data, spec.channels)
    pixels = _to_input_size(pixels, spec)
    if pixels.dtype == torch.uint8:
        return pixels.to(torch.float32).div_(255.0)
    return pixels.clamp_(0.0, 1.0)


def _to_input_size(pixels: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Resize (bilinear, antialiased) to the model's input, as the manifest says: the whole image to
    ``height x width``, or the shorter side to ``resize`` then a centre crop (torchvision's ``Resize`` and
    ``CenterCrop``). Still 8-bit where the image is: a quarter of the memory of float pixels."""
    height, width = pixels.shape[1:]
    if spec.resize is None:
        size = (spec.height, spec.width)
    elif height <= width:
        size = (spec.resize, int(spec.resize * width / height))
    else:
        size = (int(spec.resize * height / width), spec.resize)
    if (height, width) != size:
        pixels = F.interpolate(pixels[None], size, mode="bilinear", antialias=True)[0]
    if spec.crop is None:
        return pixels
    top = round((size[0] - spec.height) / 2.0)
    left = round((size[1] - spec.width) / 2.0)
    return pixels[:, top : top + spec.height, left : left + spec.width]


def _decode_torchvision(data: bytes, channels: int) -> torch.Tensor:
    """uint8 ``[C, H, W]``, or float32 in [0, 1] for 16-bit images."""
    assert _TORCHVISION is not None
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    is_png = data.startswith(_PNG_SIGNATURE)
    decode: Any = _TORCHVISION[0] if is_png else _TORCHVISION[1]
    try:
        decoded: torch.Tensor = decode(encoded, _READ_MODES[channels].value, True)  # True: apply EXIF orientation
    except RuntimeError as exc:  # libpng/libjpeg errors: the client's bytes are broken
        logger.debug("torchvision decoding failed", exc_info=exc)
        kind = "PNG" if is_png else "JPEG"
        raise InvalidImage(f"cannot decode {kind}: truncated or corrupt data ({_first_line(exc)})") from None
    if decoded.dtype == torch.uint16:
        return decoded.to(torch.float32).div_(65535.0)
    return decoded


def _decode_pillow(data: bytes, channels: int) -> torch.Tensor:
    """uint8 ``[C, H, W]``, or float32 in [0, 1] for 16-bit images."""
    image = _pillow_open(data)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in _SIXTEEN_BIT_MODES:
            # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them: scale by hand
            gray = torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0).clamp_(0.0, 1.0)
            colour = 1 if channels <= 2 else 3
            planes = [gray] * colour + [torch.ones_like(gray)] * (channels - colour)  # opaque alpha
            return torch.stack(planes)
        array = np.asarray(image.convert(_PIL_MODES[channels]), dtype=np.uint8)
    except Exception as exc:  # any failure to decode client bytes is the client's bad image, never a 500
        logger.debug("Pillow decoding failed", exc_info=exc)
        raise InvalidImage(f"cannot decode {image.format or 'image'}: {exc}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _normalise(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    scale, shift = _affine(spec.channels, tuple(spec.mean), tuple(spec.std))
    return batch.mul_(scale).sub_(shift)


@functools.lru_cache(maxsize=64)
def _affine(channels: int, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x - mean) / std`` as ``x * scale - shift``, per channel, built once per manifest."""
    std_t = torch.tensor(std, dtype=torch.float32).view(channels, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(channels, 1, 1)
    return 1.0 / std_t, mean_t / std_t


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__
