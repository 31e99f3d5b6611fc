"""Collapsing a linear network into one affine map, ``f(x) = W·vec(x) + b``.

A ResNet without nonlinear activations is an affine function of its input however deep it is. Its map
is computed exactly, in float64: ``b = f(0)``, and ``W`` from the fewer of one reverse-mode pass per
output or one forward pass per input, batched. Composing "same"-padded kernels into one big kernel would be wrong near
the border; the dense map has no such problem. The network is first checked to be affine at all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from app.simplify.batchnorm import fold_batchnorm
from app.simplify.errors import AffineMapTooLarge, SimplificationError
from app.simplify.verify import AffinityError, check_affine, float64_copy

__all__ = ["DEFAULT_MAX_AFFINE_BYTES", "PASSES_PER_CHUNK", "AffineModel", "affine_bytes", "collapse_affine"]

DEFAULT_MAX_AFFINE_BYTES = 256 * 2**20
"""Largest float32 map collapsed by default: an ImageNet-sized input with 1000 classes needs 600 MB."""

PASSES_PER_CHUNK = 64
"""Jacobian passes batched together: bounds the memory of collapsing a network with wide inputs."""


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


def _jacobian(f: nn.Module, bias: torch.Tensor, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """``W`` of the affine map ``f`` (``[K, D]``), with the fewer of K reverse or D forward passes.

    Reverse mode runs on a batch of zero inputs, one per output: the batch elements are independent
    (batch norm is in eval mode), so the gradient of ``sum_k f(x)[k, k]`` with respect to input ``k`` is
    row ``k`` of ``W``. Plain autograd rather than ``torch.func``: its transforms import ``torch._dynamo``
    on first use, 150 MiB more resident memory in every serving process, for the same numbers. With fewer
    inputs than outputs, the columns of an affine map are ``f(e_j) - f(0)``, exactly so.
    """
    num_outputs, input_size = bias.numel(), math.prod(input_shape)
    if num_outputs <= input_size:
        rows = []
        for first in range(0, num_outputs, PASSES_PER_CHUNK):
            count = min(PASSES_PER_CHUNK, num_outputs - first)
            x = torch.zeros(count, *input_shape, dtype=bias.dtype, device=bias.device, requires_grad=True)
            picked = f(x)[torch.arange(count), torch.arange(first, first + count)].sum()
            rows.append(torch.autograd.grad(picked, x)[0].reshape(count, input_size))
        return torch.cat(rows)
    eye = torch.eye(input_size, dtype=bias.dtype, device=bias.device)
    cols = [f(chunk.reshape(-1, *input_shape)) - bias for chunk in eye.split(PASSES_PER_CHUNK)]
    return torch.cat(cols).T


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
        AffineMapTooLarge: when the map would be larger than ``max_bytes``.
        SimplificationError: when the network is not affine (the message names
            the failed check).
    """
    input_size = math.prod(input_shape)
    param = next(model.parameters())
    device = param.device
    model64 = fold_batchnorm(float64_copy(model), inplace=True)  # folding first makes each pass cheaper
    # the folded convolutions are new parameters, which require grad: every forward-mode pass below would record
    # a graph, kept until the columns are joined (228 MiB for 2000 classes of 1x24x24 inputs at width 8)
    model64.requires_grad_(False)
    zero = torch.zeros(1, *input_shape, dtype=torch.float64, device=device)
    bias = model64(zero)
    if bias.ndim != 2 or bias.shape[0] != 1:
        raise SimplificationError(f"model must map [N, C, H, W] to [N, K], got output shape {tuple(bias.shape)}")
    num_outputs = bias.shape[1]
    size = affine_bytes(input_size, num_outputs)
    if size > max_bytes:
        raise AffineMapTooLarge(
            f"affine map of {input_size} inputs x {num_outputs} outputs needs {size} bytes, over the limit of "
            f"{max_bytes} bytes; not collapsed"
        )
    try:
        check_affine(model64, input_shape, device=device)
    except AffinityError as exc:
        raise SimplificationError(str(exc)) from None
    with torch.enable_grad():
        weight = _jacobian(model64, bias[0], input_shape)
    collapsed = AffineModel(weight.float(), bias[0].float(), input_shape)
    return collapsed.to(device).eval()
