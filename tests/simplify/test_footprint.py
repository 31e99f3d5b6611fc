"""What simplify() is estimated to allocate follows what it does: the affine map only when the collapse runs."""

from __future__ import annotations

from app.nets import ResNetConfig
from app.nets.footprint import state_bytes
from app.simplify import affine_bytes, simplified_bytes, simplify_bytes

LINEAR = ResNetConfig(depth=18, width=8, in_channels=3, num_classes=100, activation="identity")
RELU = ResNetConfig(depth=18, width=8, in_channels=3, num_classes=100, activation="relu")
SHAPE = (3, 32, 32)
MAP = affine_bytes(3 * 32 * 32, 100)  # 1.2 MiB


def test_the_simplified_module_is_the_affine_map_only_when_it_fits_the_cap() -> None:
    assert simplified_bytes(LINEAR, SHAPE, MAP) == MAP == (3 * 32 * 32 + 1) * 100 * 4
    assert simplified_bytes(LINEAR, SHAPE, MAP - 1) == state_bytes(LINEAR)  # declined: folded instead
    assert simplified_bytes(RELU, SHAPE, 2**40) == state_bytes(RELU)


def test_collapsing_is_counted_for_linear_networks_only() -> None:
    relu = simplify_bytes(RELU, SHAPE, num_samples=16, max_affine_bytes=MAP)
    collapsed = simplify_bytes(LINEAR, SHAPE, num_samples=16, max_affine_bytes=MAP)
    declined = simplify_bytes(LINEAR, SHAPE, num_samples=16, max_affine_bytes=MAP - 1)
    # declined: f(0) in float64 costs less than verification, which both share; collapsing: the Jacobian's 64
    # recorded passes outweigh verification here
    assert relu == declined < collapsed


def test_every_sample_costs_its_float32_copy_its_float64_copy_and_its_forward_pass() -> None:
    one, two = (simplify_bytes(RELU, SHAPE, num_samples=n, max_affine_bytes=0) for n in (1, 2))
    per_image = 3 * 32 * 32 * (4 + 8)
    assert two - one > per_image
