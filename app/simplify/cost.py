"""What a network costs per image: parameters, multiply-accumulates and elementwise operations.

MACs count convolutions and matrix products. Elementwise operations (batch norm, skip additions and
activations) cost no MACs but a pass over memory each; they are what folding and stripping remove, so
they are counted apart.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.nets.resnet import _Block
from app.simplify.affine import AffineModel

__all__ = ["count_cost", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Learned numbers in ``model`` (parameters, not batch-norm statistics or skip weights)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """Parameters, MACs and elementwise operations of ``model`` for one image of ``input_shape``."""
    macs = 0
    elementwise = 0

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal macs, elementwise
        if isinstance(module, nn.Conv2d):
            kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
            macs += output.numel() * kernel
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
        elif isinstance(module, (nn.BatchNorm2d, nn.ReLU)):
            elementwise += output.numel()
        elif isinstance(module, _Block) and module.shortcut is not None:
            elementwise += output.numel() * (2 if module.annealed else 1)  # scale and add
        elif isinstance(module, AffineModel):
            macs += module.weight.numel()

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        was_training = model.training
        model.eval()
        model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return {"parameters": count_parameters(model), "macs": macs, "elementwise": elementwise}
