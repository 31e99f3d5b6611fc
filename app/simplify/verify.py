"""Checks that a simplification is exact: affinity of a network, and errors against the original.

Everything here runs in float64 on copies, so float32 rounding in the original cannot hide or fake
a difference.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "AFFINITY_TRIALS",
    "NUM_RANDOM_INPUTS",
    "AffinityError",
    "check_affine",
    "compare",
    "float64_copy",
    "no_tf32",
]

AFFINITY_TRIALS = 4
"""Random ``(x, y, a, b)`` draws of :func:`check_affine`, evaluated as one batch of ``3 * trials + 1`` inputs."""

NUM_RANDOM_INPUTS = 16
"""Random inputs every simplification is verified on, besides the real samples it is given."""


class AffinityError(ValueError):
    """The network is not an affine map of its input, so it cannot be collapsed."""


@contextmanager
def no_tf32() -> Iterator[None]:
    """Turn TF32 off for matmuls and convolutions on CUDA, restoring the previous settings after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def float64_copy(model: nn.Module) -> nn.Module:
    """A float64, eval-mode copy of ``model`` with gradients off; ``model`` itself is untouched."""
    model64 = copy.deepcopy(model).double().eval()
    model64.requires_grad_(False)
    return model64


@torch.no_grad()
def check_affine(
    f: Callable[[torch.Tensor], torch.Tensor],
    input_shape: tuple[int, ...],
    *,
    trials: int = AFFINITY_TRIALS,
    tolerance: float = 1e-9,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Check in float64 that ``f`` is affine: ``f(a·x + b·y) = a·f(x) + b·f(y) + (1-a-b)·f(0)``.

    Args:
        f: a float64 function ``[N, *input_shape] -> [N, K]``.
        input_shape: the shape of one input.
        trials: random (x, y, a, b) draws, evaluated as one batch.
        tolerance: largest allowed error relative to the output scale.

    Returns:
        ``max_rel_error`` and ``output_scale`` of the check.

    Raises:
        AffinityError: naming the check that failed and by how much.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(trials, *input_shape, generator=gen, dtype=torch.float64)
    y = torch.randn(trials, *input_shape, generator=gen, dtype=torch.float64)
    coeffs = torch.rand(2, trials, generator=gen, dtype=torch.float64) * 4 - 2
    a, b = (c.reshape(-1, *[1] * len(input_shape)) for c in coeffs)
    zero = torch.zeros(1, *input_shape, dtype=torch.float64)
    batch = torch.cat([x, y, a * x + b * y, zero]).to(device)
    out = f(batch)
    fx, fy, fxy, f0 = out[:trials], out[trials : 2 * trials], out[2 * trials : 3 * trials], out[3 * trials :]
    a, b = coeffs[0].to(out).unsqueeze(1), coeffs[1].to(out).unsqueeze(1)
    expected = a * fx + b * fy + (1 - a - b) * f0
    scale = max(float(out.abs().max()), 1e-300)
    rel = float((fxy - expected).abs().max()) / scale
    if not rel <= tolerance:  # also catches NaN
        raise AffinityError(
            f"network is not affine: f(a*x + b*y) differs from a*f(x) + b*f(y) + (1-a-b)*f(0) by {rel:.3g} "
            f"of the output scale (tolerance {tolerance:g}); only networks without nonlinear activations collapse"
        )
    return {"max_rel_error": rel, "output_scale": scale}


COMPARE_CHUNK_VALUES = 2**16
"""Input values :func:`compare` evaluates at once (at least one input): float64 activations of a ResNet are
tens of times its input, hundreds of MB for a few 224x224 images, while 36 MNIST digits are 28,224 values.
Each input is evaluated on its own (batch norm in eval mode), so the grouping does not change the results."""


def _in_chunks(model64: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    chunk = max(1, COMPARE_CHUNK_VALUES // max(1, inputs[0].numel()))
    return torch.cat([model64(part.double()) for part in inputs.split(chunk)])


@torch.no_grad()
def compare(reference: nn.Module, candidate: nn.Module, inputs: torch.Tensor) -> dict[str, Any]:
    """Error statistics of ``candidate`` against ``reference``, both evaluated in float64 on ``inputs``.

    Returns:
        ``max_abs_error``, ``max_rel_error`` (relative to the reference's largest absolute output),
        ``top1_agreement`` (fraction of inputs with the same arg-max) and ``num_inputs``.
    """
    with no_tf32():
        ref = _in_chunks(float64_copy(reference), inputs)  # one float64 copy alive at a time
        out = _in_chunks(float64_copy(candidate), inputs)
    if ref.shape != out.shape:
        raise ValueError(f"outputs differ in shape: reference {tuple(ref.shape)}, candidate {tuple(out.shape)}")
    max_abs = float((ref - out).abs().max())
    scale = max(float(ref.abs().max()), 1e-300)
    return {
        "max_abs_error": max_abs,
        "max_rel_error": max_abs / scale,
        "top1_agreement": float((ref.argmax(1) == out.argmax(1)).double().mean()),
        "num_inputs": int(inputs.shape[0]),
    }
