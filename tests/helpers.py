"""Helpers shared by the tests: random batch-norm statistics, tiny checkpoints, a missing tool's failure or skip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest
import torch
from torch import nn

from app.nets import ResNet, ResNetConfig, build_resnet
from app.store import InputSpec, save_checkpoint

__all__ = ["missing", "randomize_batchnorm", "tiny_checkpoint", "tiny_resnet"]


def missing(reason: str) -> NoReturn:
    """A tool the test needs is not here: a failure under CI (``CI`` set: ``.ci/run`` installs it), a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason + "; CI is set (.ci/run installs it), so this is a failure, not a skip")
    pytest.skip(reason)


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm random statistics and affine parameters (the default BN is the identity,
    which hides folding bugs); returns ``model`` in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)  # type: ignore[union-attr]
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)  # type: ignore[union-attr]
            if m.affine:
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model.eval()


def tiny_resnet(seed: int = 0, **overrides: object) -> ResNet:
    """A width-4 ResNet-18 with random batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    config = ResNetConfig(**{"depth": 18, "width": 4, **overrides})  # type: ignore[arg-type]
    model = build_resnet(config)
    randomize_batchnorm(model, seed)
    return model


def tiny_checkpoint(directory: Path, name: str = "tiny", size: int = 28, **overrides: object) -> Path:
    """Write a tiny random checkpoint to ``directory/name`` and return that folder."""
    model = tiny_resnet(**overrides)
    channels = model.config.in_channels
    spec = InputSpec(channels=channels, height=size, width=size, mean=[0.5] * channels, std=[0.25] * channels)
    labels = [str(i) for i in range(model.config.num_classes)]
    folder = directory / name
    save_checkpoint(folder, model, name=name, input=spec, labels=labels)
    return folder
