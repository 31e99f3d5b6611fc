"""A generated image folder of synthetic shapes (torchvision ``ImageFolder`` layout) for the annealing tests."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from app.nets import ResNetConfig, build_resnet
from app.store import InputSpec, save_checkpoint
from tests.helpers import randomize_batchnorm

__all__ = ["SHAPES", "SIDE", "shape_checkpoint", "shape_folder"]

SHAPES = ("circle", "cross", "square")
SIDE = 16
"""Side of the model's input; the images are drawn larger (24 px) so that the decoder resizes them."""


def _draw(shape: str, rng: random.Random) -> Image.Image:
    size = 24
    image = Image.new("RGB", (size, size), tuple(rng.randrange(0, 60) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    r = rng.randrange(5, 9)
    cx, cy = rng.randrange(r + 1, size - r - 1), rng.randrange(r + 1, size - r - 1)
    colour = tuple(rng.randrange(150, 256) for _ in range(3))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.line((cx - r, cy - r, cx + r, cy + r), fill=colour, width=3)
        draw.line((cx - r, cy + r, cx + r, cy - r), fill=colour, width=3)
    return image


def shape_folder(root: Path, *, train: int = 60, val: int = 20, seed: int = 0, split: bool = True) -> Path:
    """``root/train/SHAPE/*.png`` and ``root/val/SHAPE/*.png`` (or ``root/SHAPE/*.png`` when not ``split``)."""
    rng = random.Random(seed)
    parts = {"train": train, "val": val} if split else {"": train + val}
    for part, count in parts.items():
        for shape in SHAPES:
            folder = root / part / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _draw(shape, rng).save(folder / f"{i:03d}.png")
    return root


def shape_checkpoint(directory: Path, name: str = "shapes", seed: int = 0, **overrides: object) -> Path:
    """A width-4 ResNet-18 for 3x16x16 RGB inputs and the three shapes, random weights and batch-norm statistics."""
    import torch

    torch.manual_seed(seed)
    config = ResNetConfig(**{"depth": 18, "width": 4, "in_channels": 3, "num_classes": len(SHAPES), **overrides})  # type: ignore[arg-type]
    model = randomize_batchnorm(build_resnet(config), seed)
    spec = InputSpec(channels=3, height=SIDE, width=SIDE, mean=[0.2, 0.2, 0.2], std=[0.3, 0.3, 0.3])
    save_checkpoint(directory / name, model, name=name, input=spec, labels=list(SHAPES))
    return directory / name
