"""Turning uploaded image bytes into the tensor a model expects.

The image's dimensions are read from its header (``Image.open`` is lazy) and checked before a single pixel
is decoded, so a small file that claims 100000x100000 pixels costs nothing. Then the first frame is decoded,
EXIF orientation applied, converted to the model's channels (grayscale, RGB, RGBA, palette and 16-bit
inputs all work; alpha is dropped unless the model takes it), resized to the model's input size and
normalised with the manifest's mean and std. Everything here is blocking: call it off the event loop.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

from app.serving.errors import ImageTooLarge, InvalidImage
from app.store import InputSpec

__all__ = ["decode_image", "decode_images"]

logger = logging.getLogger(__name__)

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def decode_images(blobs: list[bytes], spec: InputSpec, *, max_pixels: int) -> torch.Tensor:
    """Decode every image of one request into a ``[N, C, H, W]`` float32 batch.

    Raises:
        InvalidImage: an image is empty, unreadable, truncated or has no pixels (the message says which).
        ImageTooLarge: an image has more than ``max_pixels`` pixels.
    """
    tensors = []
    for i, blob in enumerate(blobs):
        try:
            tensors.append(decode_image(blob, spec, max_pixels=max_pixels))
        except (InvalidImage, ImageTooLarge) as exc:
            if len(blobs) == 1:
                raise
            raise type(exc)(f"image {i}: {exc.message}") from None
    return torch.stack(tensors)


def decode_image(data: bytes, spec: InputSpec, *, max_pixels: int) -> torch.Tensor:
    """Decode one image into a normalised ``[C, H, W]`` float32 tensor of the model's input size."""
    if not data:
        raise InvalidImage("empty image")
    image = _open_checked(data, max_pixels)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        pixels = _to_unit_array(image, spec)
    except Exception as exc:  # any failure to decode client bytes is the client's bad image, never a 500
        logger.debug("image decoding failed", exc_info=exc)
        raise InvalidImage(f"cannot decode {image.format or 'image'}: {exc}") from None
    return _normalise(pixels, spec)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we enforce our own limit below
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own, far higher, limit: still the client's fault
        raise ImageTooLarge(f"image has more than the limit of {max_pixels} pixels ({exc})") from None
    except Exception as exc:  # Pillow raises many kinds of errors for garbage headers
        raise InvalidImage(f"not an image Pillow can read: {type(exc).__name__}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}")
    return image


_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _to_unit_array(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """The image converted to the model's channels and size, as float32 ``[H, W, C]`` in [0, 1]."""
    size = (spec.width, spec.height)
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them: scale by hand.
        gray = np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
        resized = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BILINEAR))
        colour = 1 if spec.channels <= 2 else 3
        planes = [resized] * colour + [np.ones_like(resized)] * (spec.channels - colour)  # opaque alpha
        return np.stack(planes, axis=2).astype(np.float32)
    converted = image.convert(_MODES[spec.channels]).resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.float32) / 255.0
    return array[:, :, None] if array.ndim == 2 else array


def _normalise(pixels: np.ndarray, spec: InputSpec) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    return (tensor - mean) / std
