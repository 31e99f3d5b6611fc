import copy

import pytest
import torch

from app.nets import set_skip_weight
from app.simplify import SimplificationError, simplify
from tests.helpers import tiny_resnet

SHAPE = (1, 28, 28)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"activation": "identity"}, "affine"),
        ({"skips": "annealed"}, "skips-stripped"),
        ({}, "batchnorm-folded"),
    ],
)
def test_kind_report_and_original_unchanged(overrides, kind):
    model = tiny_resnet(**overrides)
    if overrides.get("skips") == "annealed":
        set_skip_weight(model, 0.0)
    before, structure = _state(model), repr(model)
    samples = torch.randn(5, *SHAPE)
    result = simplify(model, SHAPE, samples=samples)
    report = result.report
    assert report["kind"] == kind
    assert report["num_inputs"] == 16 + 5
    assert report["max_rel_error"] < 1e-5 and report["top1_agreement"] == 1.0
    assert report["max_abs_error"] >= 0 and report["tolerance"] == 1e-4
    assert report["params_before"] == sum(p.numel() for p in model.parameters())
    # unchanged: same tensors, same structure, still the same outputs
    assert repr(model) == structure
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(result.module(samples), model(samples), rtol=1e-4, atol=1e-4)


def test_costs_fall_as_expected():
    linear = simplify(tiny_resnet(activation="identity"), SHAPE).report
    assert linear["macs_after"] == 10 * 28 * 28 and linear["params_after"] == 10 * 28 * 28 + 10
    assert linear["affine_bytes"] == (28 * 28 + 1) * 10 * 4

    annealed = tiny_resnet(skips="annealed")
    set_skip_weight(annealed, 0.0)
    stripped = simplify(annealed, SHAPE).report
    # the three projection convs are gone; batch norm and skip additions too
    assert stripped["macs_after"] < stripped["macs_before"]
    assert stripped["elementwise_after"] < stripped["elementwise_before"]
    assert stripped["kept_skips"] == {}

    folded = simplify(tiny_resnet(), SHAPE).report
    assert folded["macs_after"] == folded["macs_before"]
    assert folded["params_after"] < folded["params_before"]  # BN's gamma and beta become conv biases


def test_verification_failure_is_refused_with_report():
    with pytest.raises(SimplificationError, match="misses the tolerance") as info:
        simplify(tiny_resnet(), SHAPE, tolerance=0.0)  # float32 rounding alone exceeds a zero tolerance
    assert info.value.report["max_rel_error"] > 0


def test_simplify_does_not_share_tensors_with_the_original():
    model = tiny_resnet(skips="annealed")
    set_skip_weight(model, 0.0)
    result = simplify(model, SHAPE)
    original = copy.deepcopy(model)
    for p in result.module.parameters():
        p.data.add_(1.0)
    assert all(
        torch.equal(a, b) for a, b in zip(original.state_dict().values(), model.state_dict().values(), strict=True)
    )
