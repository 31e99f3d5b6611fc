"""Stripping skip connections whose weight is exactly zero.

A block of :mod:`app.nets` computes ``act(residual(x) + s * shortcut(x))``. When ``s`` is exactly 0 the
skip contributes nothing (``0 * finite = 0`` in IEEE arithmetic), so its branch, identity or projection
conv with batch norm, can be deleted without changing a single output. A skip whose weight is not exactly
0, or a standard skip, is kept and reported.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from app.nets.resnet import _Block

__all__ = ["kept_skips", "strip_zero_skips"]


@torch.no_grad()
def strip_zero_skips(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Delete every skip branch whose weight is exactly 0; keep the others.

    Args:
        model: the network; it is copied first unless ``inplace``.
        inplace: modify ``model`` itself.

    Returns:
        The network with those blocks' ``shortcut`` set to ``None`` and their weight buffer removed.
    """
    model = model if inplace else copy.deepcopy(model)
    for block in model.modules():
        if isinstance(block, _Block) and block.annealed and block.shortcut is not None and block.skip_weight == 0:
            block.shortcut = None
            del block._buffers["skip_weight"]
    return model


def kept_skips(model: nn.Module) -> dict[str, float]:
    """The skips still present in ``model``, by block name, with their weight (1.0 for standard skips)."""
    return {
        name: (float(block.skip_weight) if block.annealed else 1.0)
        for name, block in model.named_modules()
        if isinstance(block, _Block) and block.shortcut is not None
    }
