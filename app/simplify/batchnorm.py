"""Folding eval-mode batch norm into the convolution before it.

A batch norm in eval mode is the per-channel affine map ``y = (x - mean) * t + beta`` with
``t = gamma / sqrt(var + eps)``, so after a convolution with kernel ``K`` and bias ``c`` it can be
absorbed exactly: ``K' = K * t`` (per output channel) and ``c' = (c - mean) * t + beta``. The arithmetic
is done in float64 and rounded once to the convolution's dtype.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

__all__ = ["fold_batchnorm", "fold_conv_bn"]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` with ``bn`` in eval mode, using the BN's own ``eps``.

    Raises:
        ValueError: when the batch norm keeps no running statistics (it normalises with batch statistics,
            which no convolution can express) or its channels do not match the convolution's outputs.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it tracks no running statistics")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"cannot fold {bn} into a conv with {conv.out_channels} output channels")
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device="meta",  # no random initialisation: every value is overwritten below
        dtype=conv.weight.dtype,
    ).to_empty(device=conv.weight.device)
    fused.weight.copy_(conv.weight.double() * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - mean) * scale + beta)  # type: ignore[union-attr]
    return fused.train(conv.training)


def _fold_children(module: nn.Module) -> None:
    """Fold every (conv, bn) pair among ``module``'s direct children, recursing into the others."""
    names = list(module._modules)
    pairs: list[tuple[str, str]] = []
    if isinstance(module, nn.Sequential):
        pairs = list(itertools.pairwise(names))
    else:  # blocks name their pairs convN / bnN
        pairs = [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in module._modules]
    for conv_name, bn_name in pairs:
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module._modules[conv_name] = fold_conv_bn(conv, bn)
            module._modules[bn_name] = nn.Identity()
    for child in module.children():
        _fold_children(child)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every batch norm that directly follows a convolution into it; the result is in eval mode.

    A batch norm counts as following a convolution when the two are consecutive in an ``nn.Sequential``
    or are named ``convN`` and ``bnN`` in the same module (as in :mod:`app.nets` blocks). Others are left
    as they are.

    Args:
        model: the network; it is copied first unless ``inplace``.
        inplace: modify ``model`` itself.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    _fold_children(model)
    return model
