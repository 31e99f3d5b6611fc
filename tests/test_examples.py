"""The digit images the README's examples post are real digits that the shipped models recognise."""

from __future__ import annotations

from pathlib import Path

import torch

from app.serving.images import decode_images
from app.store import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_every_example_digit_is_recognised_by_the_shipped_resnet() -> None:
    paths = sorted((ROOT / "examples").glob("digit-*.png"))
    assert [p.stem for p in paths] == [f"digit-{d}" for d in range(10)]
    manifest, model = load_checkpoint(ROOT / "model_store" / "resnet18-mnist")
    images = decode_images([p.read_bytes() for p in paths], manifest.input, max_pixels=28 * 28)
    with torch.inference_mode():
        predicted = model(images).argmax(1).tolist()
    assert [manifest.labels[i] for i in predicted] == [str(d) for d in range(10)]
