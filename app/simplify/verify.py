"""Checks that a simplification is exact: affinity of a network, and errors against the original.

Everything here runs in float64, so float32 rounding in the original cannot hide or fake a difference. The
comparison evaluates each network in float64 one module at a time (:func:`evaluated_in_float64`) rather than on a
whole float64 copy: a served ResNet-50 is verified with a few MB of float64 weights alive, not 200 MB.
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
    "error_stats",
    "evaluated_in_float64",
    "float64_copy",
    "no_tf32",
    "reference_outputs",
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


@contextmanager
def evaluated_in_float64(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` computing in float64 (given float64 inputs) without a float64 copy of all of it.

    Just before each module's forward pass its own floating-point parameters and buffers (not its children's)
    are replaced by float64 copies, and just after it they are put back, so at most one module's float64 state
    (plus those of the modules it is nested in) is alive at a time. ``model`` is unchanged on exit, also after an
    error. A module whose forward uses another module's weights without calling it would meet float32 weights
    and fail loudly (a dtype error), never compute in float32 silently. Call it under ``torch.no_grad()``, with no
    other thread using ``model``: its weights are swapped in place while it runs. The model must be in eval
    mode (batch norm's running statistics are read, not updated).
    """
    saved: dict[nn.Module, list[tuple[dict[str, Any], str, torch.Tensor]]] = {}

    def cast(module: nn.Module, args: Any) -> None:
        entries = []
        tables: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
        for table in tables:
            for name, tensor in table.items():
                if tensor is not None and tensor.is_floating_point() and tensor.dtype != torch.float64:
                    entries.append((table, name, tensor))
                    table[name] = tensor.detach().double()
        saved[module] = entries

    def restore(module: nn.Module, *_: Any) -> None:
        for table, name, tensor in saved.pop(module, ()):
            table[name] = tensor

    handles = []
    try:
        for module in model.modules():
            own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
            if any(t.is_floating_point() for t in own):
                handles.append(module.register_forward_pre_hook(cast))
                handles.append(module.register_forward_hook(restore))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for module in list(saved):  # a forward pass that raised left its modules cast
            restore(module)


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


def _in_chunks(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model``'s float64 outputs for ``inputs``, a few inputs at a time, one module's weights in float64 at once."""
    chunk = max(1, COMPARE_CHUNK_VALUES // max(1, inputs[0].numel()))
    was_training = model.training
    model.eval()
    try:
        with evaluated_in_float64(model):
            return torch.cat([model(part.double()) for part in inputs.split(chunk)])
    finally:
        model.train(was_training)


@torch.no_grad()
def reference_outputs(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model``'s outputs for ``inputs``, computed in float64 (TF32 off): what a simplification or a runtime is
    checked against."""
    with no_tf32():
        return _in_chunks(model, inputs)


def error_stats(reference: torch.Tensor, outputs: torch.Tensor) -> dict[str, Any]:
    """Error statistics of ``outputs`` against float64 ``reference`` outputs, compared in float64.

    Returns:
        ``max_abs_error``, ``max_rel_error`` (relative to the reference's largest absolute output; NaN or inf when
        ``outputs`` are not finite), ``top1_agreement`` (fraction of inputs with the same arg-max) and
        ``num_inputs``.

    Raises:
        ValueError: the two differ in shape.
    """
    if reference.shape != outputs.shape:
        raise ValueError(
            f"outputs differ in shape: reference {tuple(reference.shape)}, candidate {tuple(outputs.shape)}"
        )
    outputs = outputs.to(reference.device, torch.float64)
    max_abs = float((reference - outputs).abs().max())
    scale = max(float(reference.abs().max()), 1e-300)
    return {
        "max_abs_error": max_abs,
        "max_rel_error": max_abs / scale,
        "top1_agreement": float((reference.argmax(1) == outputs.argmax(1)).double().mean()),
        "num_inputs": int(reference.shape[0]),
    }


@torch.no_grad()
def compare(reference: nn.Module, candidate: nn.Module, inputs: torch.Tensor) -> dict[str, Any]:
    """Error statistics (:func:`error_stats`) of ``candidate`` against ``reference``, both evaluated in float64 on
    ``inputs``."""
    return error_stats(reference_outputs(reference, inputs), reference_outputs(candidate, inputs))
