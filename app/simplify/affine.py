"""Collapsing a linear network into one affine map, ``f(x) = W·vec(x) + b``.

A ResNet without nonlinear activations is an affine function of its input however deep it is. Its map
is computed exactly, in float64: ``b = f(0)``, and ``W`` from Jacobian passes at 0 (one vector-Jacobian
product per output when there are fewer outputs than inputs, else one Jacobian-vector product per input),
batched with ``torch.func.vmap``. Composing "same"-padded kernels into one big kernel would be wrong near
the border; the dense map has no such problem. The network is first checked to be affine at all.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jvp, vjp, vmap

from app.simplify.batchnorm import fold_batchnorm
from app.simplify.errors import SimplificationError
from app.simplify.verify import AffinityError, check_affine, float64_copy

__all__ = ["DEFAULT_MAX_AFFINE_BYTES", "AffineModel", "affine_bytes", "collapse_affine"]

DEFAULT_MAX_AFFINE_BYTES = 256 * 2**20
"""Largest float32 map collapsed by default: an ImageNet-sized input with 1000 classes needs 600 MB."""

_PASSES_PER_CHUNK = 64  # Jacobian passes batched together: bounds memory for wide inputs


class AffineModel(nn.Module):
    """``[N, C, H, W] -> [N, K]`` as one matrix product: ``vec(x) @ W.T + b``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if weight.shape != (bias.numel(), math.prod(input_shape)):
            raise ValueError(f"weight shape {tuple(weight.shape)} does not fit bias {bias.numel()} and {input_shape}")
        self.input_shape = tuple(input_shape)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"collapsed model takes inputs of shape [N, {self.input_shape}], got {tuple(x.shape)}")
        return F.linear(x.flatten(1), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, num_classes={self.bias.numel()}"


def affine_bytes(input_size: int, num_outputs: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes needed to store the affine map of ``input_size`` inputs and ``num_outputs`` outputs."""
    return (input_size + 1) * num_outputs * torch.empty((), dtype=dtype).element_size()


def _jacobian(f: nn.Module, zero: torch.Tensor, num_outputs: int) -> torch.Tensor:
    """``W`` of the linear part of ``f`` (``[K, D]``), with the fewer of K vjp or D jvp passes."""
    input_size = zero.numel()
    shape = zero.shape
    if num_outputs <= input_size:
        _, pullback = vjp(f, zero)[:2]
        eye = torch.eye(num_outputs, dtype=zero.dtype, device=zero.device)
        rows = [vmap(pullback)(chunk.unsqueeze(1))[0] for chunk in eye.split(_PASSES_PER_CHUNK)]
        return torch.cat(rows).reshape(num_outputs, input_size)

    def push(tangent: torch.Tensor) -> torch.Tensor:
        return jvp(f, (zero,), (tangent,))[1]

    eye = torch.eye(input_size, dtype=zero.dtype, device=zero.device)
    with warnings.catch_warnings():
        # torch's forward-mode AD scripts its own decompositions on first use and warns about it
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        cols = [vmap(push)(chunk.reshape(-1, *shape)) for chunk in eye.split(_PASSES_PER_CHUNK)]
    return torch.cat(cols).reshape(input_size, num_outputs).T


@torch.no_grad()
def collapse_affine(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    max_bytes: int = DEFAULT_MAX_AFFINE_BYTES,
) -> AffineModel:
    """Collapse a network without nonlinearities into one float32 matrix product.

    Args:
        model: a network ``[N, C, H, W] -> [N, K]``; it is not modified.
        input_shape: ``(C, H, W)`` of the inputs the collapsed model will take.
        max_bytes: decline (without computing anything) when the float32 map would be larger.

    Returns:
        An :class:`AffineModel` on the model's device, in eval mode.

    Raises:
        SimplificationError: when the map is too large, or the network is not affine (the message names
            the failed check).
    """
    input_size = math.prod(input_shape)
    param = next(model.parameters())
    device = param.device
    model64 = fold_batchnorm(float64_copy(model), inplace=True)  # folding first makes each pass cheaper
    zero = torch.zeros(1, *input_shape, dtype=torch.float64, device=device)
    bias = model64(zero)
    if bias.ndim != 2 or bias.shape[0] != 1:
        raise SimplificationError(f"model must map [N, C, H, W] to [N, K], got output shape {tuple(bias.shape)}")
    num_outputs = bias.shape[1]
    size = affine_bytes(input_size, num_outputs)
    if size > max_bytes:
        raise SimplificationError(
            f"affine map of {input_size} inputs x {num_outputs} outputs needs {size} bytes, over the limit of "
            f"{max_bytes} bytes; not collapsed"
        )
    try:
        check_affine(model64, input_shape, device=device)
    except AffinityError as exc:
        raise SimplificationError(str(exc)) from None
    with torch.enable_grad():
        weight = _jacobian(model64, zero, num_outputs)
    collapsed = AffineModel(weight.float(), bias[0].float(), input_shape)
    return collapsed.to(device).eval()
