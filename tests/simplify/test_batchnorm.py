import pytest
import torch
from torch import nn

from app.simplify import fold_batchnorm, fold_conv_bn
from app.simplify.verify import float64_copy
from tests.helpers import randomize_batchnorm, tiny_resnet


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_fold_conv_bn_uses_the_bn_eps_and_handles_affine_false(affine, eps):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True).double()
    bn = randomize_batchnorm(nn.BatchNorm2d(5, eps=eps, affine=affine).double())
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(fold_conv_bn(conv, bn)(x), bn(conv(x)), rtol=1e-12, atol=1e-12)


def test_fold_refuses_bn_without_running_statistics():
    with pytest.raises(ValueError, match="tracks no running statistics"):
        fold_conv_bn(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("skips", ["standard", "annealed"])
def test_folded_resnet_matches_and_has_no_batchnorm(depth, skips):
    model = tiny_resnet(depth=depth, skips=skips, stem="imagenet")
    model64 = float64_copy(model)
    folded = fold_batchnorm(model64)  # in float64 the algebra is exact up to float64 rounding
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 1, 33, 30, dtype=torch.float64)
    torch.testing.assert_close(folded(x), model64(x), rtol=1e-10, atol=1e-10)


def test_fold_leaves_input_unchanged_unless_inplace():
    model = tiny_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.layer1[0].bn1, nn.BatchNorm2d)
    fold_batchnorm(model, inplace=True)
    assert isinstance(model.layer1[0].bn1, nn.Identity)
