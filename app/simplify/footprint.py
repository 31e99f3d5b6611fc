"""The memory :func:`app.simplify.simplify` needs, worked out from the architecture before anything is built.

Besides the float32 model it is given, ``simplify`` holds a copy of it (never modifying its input), the
simplified module and its float32 verification inputs, and on top of those runs one of two stages:

- collapsing a linear network: a float64 copy (briefly beside its float32 deep copy), ``f(0)``, the
  affinity check on ``3 * AFFINITY_TRIALS + 1`` float64 inputs, then the Jacobian, ``PASSES_PER_CHUNK``
  passes at a time, with autograd (reverse mode) or an identity matrix (forward mode), its float64 rows
  twice while they are joined, and the float32 map. A map over ``max_affine_bytes`` is declined after
  ``f(0)``;
- verification: the original, then the simplified network, each running the inputs in float64 a few at a time
  (``COMPARE_CHUNK_VALUES``) with one layer's weights in float64 at a time (the affine map, or the largest
  layer), not a float64 copy of the network.

Every figure is an upper bound; ``tests/serving/test_model_budget.py`` compares the whole load with measured peaks.
"""

from __future__ import annotations

import math

from app.nets.footprint import forward_bytes, largest_layer_elements, state_bytes
from app.nets.resnet import ResNetConfig
from app.simplify.affine import PASSES_PER_CHUNK, affine_bytes
from app.simplify.verify import AFFINITY_TRIALS, COMPARE_CHUNK_VALUES, NUM_RANDOM_INPUTS

__all__ = ["simplified_bytes", "simplify_bytes"]

_F64 = 8
_F32 = 4


def _collapses(config: ResNetConfig, input_shape: tuple[int, int, int], max_affine_bytes: int) -> bool:
    return config.linear and affine_bytes(math.prod(input_shape), config.num_classes) <= max_affine_bytes


def simplified_bytes(config: ResNetConfig, input_shape: tuple[int, int, int], max_affine_bytes: int) -> int:
    """Bytes of the module ``simplify`` returns: the dense affine map, or a network no larger than the original."""
    if _collapses(config, input_shape, max_affine_bytes):
        return affine_bytes(math.prod(input_shape), config.num_classes)
    return state_bytes(config)


def _collapse_bytes(config: ResNetConfig, input_shape: tuple[int, int, int], collapses: bool) -> int:
    size, outputs = math.prod(input_shape), config.num_classes
    model64 = 3 * state_bytes(config)  # the float32 deep copy, then its float64 parameters
    bias = model64 + forward_bytes(config, input_shape, 1, _F64)
    if not collapses:
        return bias
    trials = 3 * AFFINITY_TRIALS + 1
    check = model64 + 3 * trials * size * _F64 + forward_bytes(config, input_shape, trials, _F64)
    if outputs <= size:  # reverse mode: a batch of inputs and their gradients, every conv input kept
        chunk = min(PASSES_PER_CHUNK, outputs)
        passes = 2 * chunk * size * _F64 + forward_bytes(config, input_shape, chunk, _F64, autograd=True)
    else:  # forward mode: the identity matrix, pushed through in chunks
        passes = size * size * _F64 + forward_bytes(config, input_shape, PASSES_PER_CHUNK, _F64)
    jacobian = model64 + passes + 2 * outputs * size * _F64 + outputs * size * _F32
    return max(bias, check, jacobian)


def _verify_bytes(config: ResNetConfig, input_shape: tuple[int, int, int], num_inputs: int, layer: int) -> int:
    """``layer``: float32 bytes of the largest single module of either network, whose float64 copy is the
    largest alive at once."""
    copies = 2 * layer
    size = math.prod(input_shape)
    chunk = min(num_inputs, max(1, COMPARE_CHUNK_VALUES // size))  # inputs evaluated at once
    outputs = num_inputs * config.num_classes * _F64
    return copies + chunk * size * _F64 + outputs + forward_bytes(config, input_shape, chunk, _F64)


def simplify_bytes(
    config: ResNetConfig, input_shape: tuple[int, int, int], *, num_samples: int, max_affine_bytes: int
) -> int:
    """An upper bound on the memory ``simplify`` allocates, besides the model it is given.

    Args:
        config: the architecture of the model.
        input_shape: ``(C, H, W)`` of one input.
        num_samples: real inputs verified on, besides ``NUM_RANDOM_INPUTS`` random ones.
        max_affine_bytes: the cap ``simplify`` is given; a linear network whose map is larger is folded.
    """
    module = simplified_bytes(config, input_shape, max_affine_bytes)
    num_inputs = NUM_RANDOM_INPUTS + num_samples
    held = state_bytes(config) + module + num_inputs * math.prod(input_shape) * _F32
    collapses = _collapses(config, input_shape, max_affine_bytes)
    layer = module if collapses else largest_layer_elements(config) * _F32
    stages = [_verify_bytes(config, input_shape, num_inputs, layer)]
    if config.linear:
        stages.append(_collapse_bytes(config, input_shape, collapses))
    return held + max(stages)
