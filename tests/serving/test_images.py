"""Image decoding: modes, resizing, normalisation, and refusal of bad or huge images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from app.serving.errors import ImageTooLarge, InvalidImage
from app.serving.images import decode_image, decode_images
from app.store import InputSpec
from tests.serving.conftest import png

GRAY = InputSpec(channels=1, height=4, width=4, mean=[0.5], std=[0.25])
RGB = InputSpec(channels=3, height=4, width=4, mean=[0.0, 0.5, 1.0], std=[1.0, 0.5, 0.25])


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` but which carries almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def test_uniform_gray_is_normalised_with_the_manifest_statistics() -> None:
    tensor = decode_image(png(np.full((10, 7), 204, dtype=np.uint8)), GRAY, max_pixels=10**6)
    assert tensor.shape == (1, 4, 4) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, torch.full((1, 4, 4), (204 / 255 - 0.5) / 0.25))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_every_mode_converts_to_gray(mode: str) -> None:
    image = Image.new("L", (6, 6), 102)
    # the 16-bit image has the same brightness: 102 * 257 / 65535 == 102 / 255
    data = png(np.full((6, 6), 102 * 257, dtype=np.uint16)) if mode == "I;16" else encode(image.convert(mode))
    tensor = decode_image(data, GRAY, max_pixels=10**6)
    torch.testing.assert_close(tensor, torch.full((1, 4, 4), (102 / 255 - 0.5) / 0.25), atol=1e-3, rtol=0)


def test_gray_converts_to_rgb_with_per_channel_statistics() -> None:
    tensor = decode_image(png(np.full((4, 4), 255, dtype=np.uint8)), RGB, max_pixels=10**6)
    expected = torch.tensor([(1 - 0.0) / 1.0, (1 - 0.5) / 0.5, (1 - 1.0) / 0.25]).view(3, 1, 1).expand(3, 4, 4)
    torch.testing.assert_close(tensor, expected)


def test_rgb_keeps_its_channels() -> None:
    array = np.zeros((4, 4, 3), dtype=np.uint8)
    array[..., 0] = 255
    tensor = decode_image(png(array), RGB, max_pixels=10**6)
    torch.testing.assert_close(tensor[:, 0, 0], torch.tensor([1.0, -1.0, -4.0]))


def test_jpeg_is_read() -> None:
    tensor = decode_image(encode(Image.new("L", (8, 8), 128), "JPEG"), GRAY, max_pixels=10**6)
    torch.testing.assert_close(tensor, torch.full((1, 4, 4), (128 / 255 - 0.5) / 0.25), atol=0.02, rtol=0)


def test_resize_keeps_a_left_right_split() -> None:
    array = np.zeros((40, 40), dtype=np.uint8)
    array[:, 20:] = 255
    tensor = decode_image(png(array), GRAY, max_pixels=10**6)
    assert torch.all(tensor[0, :, 0] == (0 - 0.5) / 0.25)  # the outer columns see only one side
    assert torch.all(tensor[0, :, 3] == (1 - 0.5) / 0.25)
    assert torch.all(tensor[0, :, 1] < tensor[0, :, 2])


def test_decode_images_stacks_a_batch() -> None:
    batch = decode_images([png(np.zeros((4, 4), np.uint8)), png(np.full((4, 4), 255, np.uint8))], GRAY, max_pixels=99)
    assert batch.shape == (2, 1, 4, 4)
    assert batch[0].max() < batch[1].min()


def test_header_claiming_a_huge_image_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="100000x100000 = 10000000000 pixels, the limit is 16777216"):
        decode_image(png_header_claiming(100_000, 100_000), GRAY, max_pixels=4096 * 4096)
    with pytest.raises(ImageTooLarge, match="5000x5000"):  # below Pillow's own limit: ours applies
        decode_image(png_header_claiming(5000, 5000), GRAY, max_pixels=4096 * 4096)


def test_pixel_limit_is_a_setting() -> None:
    data = png(np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageTooLarge, match="limit is 99"):
        decode_image(data, GRAY, max_pixels=99)
    assert decode_image(data, GRAY, max_pixels=100).shape == (1, 4, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"hello, this is text and not an image", "not an image"),
        (png(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8))[:500], "truncated"),
        (png_header_claiming(0, 10), "no pixels|not an image"),
    ],
    ids=["empty", "text", "truncated-png", "zero-width"],
)
def test_bad_images_are_invalid(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode_image(data, GRAY, max_pixels=10**6)


def test_batch_error_names_the_bad_image() -> None:
    with pytest.raises(InvalidImage, match="image 1: empty image"):
        decode_images([png(np.zeros((4, 4), np.uint8)), b""], GRAY, max_pixels=10**6)


@pytest.mark.parametrize("size", [(300, 400), (500, 260), (256, 256)])
def test_resize_and_centre_crop_follow_torchvision(size: tuple[int, int]) -> None:
    """An ImageNet-style manifest (shorter side to 256, centre crop 224) decodes as torchvision's transforms do."""
    from torchvision.transforms import v2

    spec = InputSpec(
        channels=3,
        height=224,
        width=224,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        resize=256,
        crop="center",
    )
    rng = np.random.default_rng(sum(size))
    array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    array[:, : size[1] // 3] = 0  # structure, so that an off-by-some crop shows
    got = decode_image(png(array), spec, max_pixels=10**6)
    pixels = torch.from_numpy(array).permute(2, 0, 1)
    expected = v2.Compose(
        [
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(spec.mean, spec.std),
        ]
    )(pixels)
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, expected, atol=1.5 / 255 / 0.224, rtol=0)
