"""Exact algebraic simplifications of ResNets, each verified in float64 against the original.

``simplify`` picks the transform from the network: identity activations collapse to one affine map;
annealed skips are folded and stripped; standard ResNets get their batch norms folded. The input
model is never modified.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from app.nets.resnet import ResNet
from app.simplify.affine import DEFAULT_MAX_AFFINE_BYTES, AffineModel, affine_bytes, collapse_affine
from app.simplify.batchnorm import fold_batchnorm, fold_conv_bn
from app.simplify.cost import count_cost, count_parameters
from app.simplify.errors import AffineMapTooLarge, SimplificationError
from app.simplify.footprint import simplified_bytes, simplify_bytes
from app.simplify.skips import kept_skips, strip_zero_skips
from app.simplify.verify import (
    NUM_RANDOM_INPUTS,
    AffinityError,
    check_affine,
    compare,
    error_stats,
    reference_outputs,
)

__all__ = [
    "DEFAULT_MAX_AFFINE_BYTES",
    "DEFAULT_TOLERANCE",
    "AffineMapTooLarge",
    "AffineModel",
    "AffinityError",
    "SimplificationError",
    "Simplified",
    "affine_bytes",
    "check_affine",
    "collapse_affine",
    "compare",
    "count_cost",
    "count_parameters",
    "error_stats",
    "fold_batchnorm",
    "fold_conv_bn",
    "kept_skips",
    "reference_outputs",
    "simplified_bytes",
    "simplify",
    "simplify_bytes",
    "strip_zero_skips",
]

DEFAULT_TOLERANCE = 1e-4
"""Largest error relative to the output scale that a served simplification may have.

Exact algebra leaves only float32 rounding of the new weights, about 1e-7 of the output scale."""


@dataclass
class Simplified:
    """A simplified network, the report of how it was made and verified, and what it was verified on."""

    module: nn.Module
    report: dict[str, Any] = field(default_factory=dict)
    inputs: torch.Tensor | None = None  # the verification inputs, float32 [N, C, H, W]
    reference: torch.Tensor | None = None  # the original's float64 outputs for them: what a runtime is checked against


def _random_inputs(input_shape: tuple[int, int, int], count: int, device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(count, *input_shape, generator=gen).to(device)


def _transform(
    model: nn.Module, input_shape: tuple[int, int, int], max_affine_bytes: int
) -> tuple[nn.Module, dict[str, Any]]:
    config = model.config if isinstance(model, ResNet) else None
    details: dict[str, Any] = {}
    if config is not None and config.linear:
        try:
            collapsed = collapse_affine(model, input_shape, max_bytes=max_affine_bytes)
        except AffineMapTooLarge as exc:
            details["affine_declined"] = str(exc)
        else:
            return collapsed, {"kind": "affine", "affine_bytes": affine_bytes(*collapsed.weight.shape[::-1])}
    folded = fold_batchnorm(model)
    if config is not None and config.skips == "annealed":
        stripped = strip_zero_skips(folded, inplace=True)
        return stripped, {**details, "kind": "skips-stripped", "kept_skips": kept_skips(stripped)}
    return folded, {**details, "kind": "batchnorm-folded"}


def simplify(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    samples: torch.Tensor | None = None,
    max_affine_bytes: int = DEFAULT_MAX_AFFINE_BYTES,
    tolerance: float = DEFAULT_TOLERANCE,
    num_random: int = NUM_RANDOM_INPUTS,
    seed: int = 0,
) -> Simplified:
    """Simplify ``model`` exactly and verify the result against it in float64.

    Args:
        model: a network ``[N, C, H, W] -> [N, K]``, usually an :class:`app.nets.ResNet`; not modified.
        input_shape: ``(C, H, W)`` of one input.
        samples: real inputs ``[N, C, H, W]`` to verify on, besides ``num_random`` random ones.
        max_affine_bytes: a linear network whose float32 map is larger is folded instead of collapsed,
            and the report says why (``affine_declined``).
        tolerance: largest error relative to the output scale that passes verification.

    Returns:
        The simplified float32 module in eval mode on the model's device, its report, the verification inputs and
        the original's float64 outputs for them.

    Raises:
        SimplificationError: when the network claims to be linear but is not affine, or the simplified
            network misses the tolerance; ``.report`` holds what was measured.
    """
    start = time.perf_counter()
    param = next(model.parameters())
    # transforms never modify their input; a model not already in eval mode is copied so that it stays as given
    original = model if not model.training else copy.deepcopy(model).eval()
    module, report = _transform(original, input_shape, max_affine_bytes)
    transform_seconds = time.perf_counter() - start
    inputs = _random_inputs(input_shape, num_random, param.device, seed)
    if samples is not None:
        inputs = torch.cat([inputs, samples.to(inputs)])
    before, after = count_cost(original, input_shape), count_cost(module, input_shape)
    reference = reference_outputs(original, inputs)
    report.update(
        {
            "params_before": before["parameters"],
            "params_after": after["parameters"],
            "macs_before": before["macs"],
            "macs_after": after["macs"],
            "elementwise_before": before["elementwise"],
            "elementwise_after": after["elementwise"],
            **error_stats(reference, reference_outputs(module, inputs)),
            "tolerance": tolerance,
            "transform_seconds": transform_seconds,
            "seconds": time.perf_counter() - start,
        }
    )
    if not report["max_rel_error"] <= tolerance:
        raise SimplificationError(
            f"{report['kind']} simplification misses the tolerance: max error {report['max_rel_error']:.3g} of the "
            f"output scale > {tolerance:g} on {report['num_inputs']} inputs; not served",
            report,
        )
    return Simplified(module=module.to(param.dtype).eval(), report=report, inputs=inputs, reference=reference)
