"""Helpers for the importer tests: torchvision ResNets with random weights and batch-norm statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from tests.helpers import randomize_batchnorm

__all__ = ["IMAGENET", "NUM_CLASSES", "save_pt", "torchvision_resnet"]

NUM_CLASSES = 10
IMAGENET = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]


def torchvision_resnet(arch: str, num_classes: int = NUM_CLASSES, seed: int = 0) -> nn.Module:
    """torchvision's ``arch`` with seeded random weights and random batch-norm statistics (the default batch
    norm is the identity, which would hide a mix-up of batch norms), in eval mode."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    return randomize_batchnorm(model, seed)


def save_pt(path: Path, obj: object) -> Path:
    """``torch.save(obj, path)``; returns ``path``."""
    torch.save(obj, path)
    return path


def assert_predicts(prediction: dict[str, Any], expected: torch.Tensor, *, atol: float, msg: str) -> None:
    """A ``/predict`` prediction asked with ``top_k`` = every class: the expected top class, and every class's
    probability within ``atol`` of ``expected`` (float64 probabilities)."""
    got = torch.zeros(len(expected), dtype=torch.float64)
    for entry in prediction["top_k"]:
        got[entry["index"]] = entry["probability"]
    assert prediction["index"] == int(expected.argmax()), msg
    torch.testing.assert_close(got, expected, atol=atol, rtol=0, msg=msg)
