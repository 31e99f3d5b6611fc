import pytest
import torch

from app.simplify import AffineMapTooLarge, AffineModel, SimplificationError, collapse_affine, simplify
from app.simplify.verify import float64_copy
from tests.helpers import tiny_resnet

# Collapsing leaves only the float32 rounding of W and b: errors of ~1e-7 of the output scale.
REL_TOLERANCE = 1e-5

CASES = [
    # depth, width, stem, (C, H, W), classes
    (18, 4, "small", (1, 28, 28), 10),
    (34, 4, "small", (3, 32, 32), 2),
    (18, 8, "imagenet", (3, 29, 31), 37),
    (50, 2, "imagenet", (1, 29, 31), 100),
    (18, 4, "small", (1, 5, 3), 20),  # fewer inputs (15) than outputs: the jvp path
]


def _assert_matches_float64(model, collapsed, shape, seed=1):
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    reference = float64_copy(model)(x)
    got = collapsed(x.float()).double()
    scale = reference.abs().max().item()
    print(f"max |difference| = {(got - reference).abs().max().item():.3g}, output scale {scale:.3g}")
    torch.testing.assert_close(got, reference, rtol=0, atol=REL_TOLERANCE * scale)


@pytest.mark.parametrize(("depth", "width", "stem", "shape", "classes"), CASES)
def test_collapse_matches_float64_reference(depth, width, stem, shape, classes):
    model = tiny_resnet(
        depth=depth, width=width, stem=stem, in_channels=shape[0], num_classes=classes, activation="identity"
    )
    collapsed = collapse_affine(model, shape)
    assert isinstance(collapsed, AffineModel)
    assert collapsed.weight.shape == (classes, shape[0] * shape[1] * shape[2])
    _assert_matches_float64(model, collapsed, shape)


def test_collapse_handles_annealed_linear_network():
    model = tiny_resnet(activation="identity", skips="annealed")
    model.layer2[0].skip_weight.fill_(0.3)
    _assert_matches_float64(model, collapse_affine(model, (1, 28, 28)), (1, 28, 28))


def test_relu_network_is_refused_naming_the_check():
    with pytest.raises(SimplificationError, match=r"not affine: f\(a\*x \+ b\*y\)"):
        collapse_affine(tiny_resnet(), (1, 28, 28))


def test_simplify_refuses_a_relu_network_that_claims_to_be_linear():
    model = tiny_resnet(activation="identity")
    model.layer3[1].act = torch.nn.ReLU()  # a nonlinearity the configuration does not admit
    with pytest.raises(SimplificationError, match="not affine"):
        simplify(model, (1, 28, 28))


def test_oversized_map_is_declined_before_any_work():
    model = tiny_resnet(activation="identity", in_channels=3, num_classes=1000, stem="imagenet")
    with pytest.raises(AffineMapTooLarge, match=r"needs 602116000 bytes, over the limit"):
        collapse_affine(model, (3, 224, 224))  # (150,528 inputs + bias) x 1,000 outputs x 4 bytes


def test_simplify_folds_instead_when_collapse_is_declined():
    model = tiny_resnet(activation="identity")
    result = simplify(model, (1, 28, 28), max_affine_bytes=1000)
    assert result.report["kind"] == "batchnorm-folded"
    assert "over the limit of 1000 bytes" in result.report["affine_declined"]


def test_collapsed_model_rejects_other_input_shapes():
    collapsed = collapse_affine(tiny_resnet(activation="identity"), (1, 28, 28))
    with pytest.raises(ValueError, match=r"inputs of shape \[N, \(1, 28, 28\)\]"):
        collapsed(torch.zeros(1, 1, 32, 32))


def test_forward_mode_collapse_records_no_graph():
    # Fewer inputs (15) than outputs (20): the columns are f(e_j) - f(0) and need no gradient. The folded convs are
    # new parameters that require grad, so each chunk of passes used to record a graph, all kept until the columns
    # were joined: 228 MiB for 2000 classes of 1x24x24 inputs at width 8.
    model = tiny_resnet(num_classes=20, activation="identity")
    recorded = []
    model.fc.register_forward_hook(lambda module, inputs, out: recorded.append(out.requires_grad))  # deep-copied
    collapsed = collapse_affine(model, (1, 5, 3))
    assert len(recorded) >= 2 and not any(recorded), recorded
    _assert_matches_float64(model, collapsed, (1, 5, 3))
