import pytest
import torch
import torchvision
from torch import nn

from app.nets import ResNetConfig, build_resnet, set_skip_weight, skip_weights
from tests.helpers import tiny_resnet


@pytest.mark.parametrize(
    ("depth", "reference"),
    [
        (18, torchvision.models.resnet18),
        (34, torchvision.models.resnet34),
        (50, torchvision.models.resnet50),
        (101, torchvision.models.resnet101),
        (152, torchvision.models.resnet152),
    ],
)
def test_imagenet_configuration_has_torchvision_parameter_count(depth, reference):
    config = ResNetConfig(depth=depth, width=64, in_channels=3, num_classes=1000, stem="imagenet")
    ours = sum(p.numel() for p in build_resnet(config).parameters())
    theirs = sum(p.numel() for p in reference().parameters())
    assert ours == theirs


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize("stem", ["small", "imagenet"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 29, 31)])
def test_output_shape(depth, stem, shape):
    model = tiny_resnet(depth=depth, stem=stem, in_channels=shape[0], num_classes=7).eval()
    features = model.forward_features(torch.randn(2, *shape))
    assert features.shape[:2] == (2, model.num_features)
    assert model.forward_head(features).shape == (2, 7)
    assert model(torch.randn(3, *shape)).shape == (3, 7)


def test_linear_mode_has_no_nonlinearity():
    model = tiny_resnet(activation="identity", stem="imagenet")
    kinds = {type(m) for m in model.modules()}
    assert nn.ReLU not in kinds and nn.MaxPool2d not in kinds
    assert nn.AvgPool2d in kinds


def test_annealed_skip_weights_are_saved_and_set():
    model = tiny_resnet(skips="annealed")
    keys = [k for k in model.state_dict() if k.endswith("skip_weight")]
    assert len(keys) == 8  # ResNet-18: 2+2+2+2 blocks
    assert skip_weights(model) == [1.0] * 8
    set_skip_weight(model, 0.25)
    assert skip_weights(model) == [0.25] * 8
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        set_skip_weight(model, 1.5)
    with pytest.raises(ValueError, match="no annealed skips"):
        set_skip_weight(tiny_resnet(), 0.0)


def test_skip_weight_scales_the_skip():
    torch.manual_seed(0)
    model = tiny_resnet(skips="annealed", activation="identity")
    block = model.layer1[0]
    x = torch.randn(2, 4, 8, 8)
    set_skip_weight(model, 0.5)
    expected = block.residual(x) + 0.5 * block.shortcut(x)
    torch.testing.assert_close(block(x), expected)


def test_plain_network_has_no_shortcuts():
    model = tiny_resnet(skips="none")
    assert all(b.shortcut is None for b in model.blocks())
    assert skip_weights(model) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("depth", 20, "depth must be one of"),
        ("width", 0, "width must be >= 1"),
        ("num_classes", 1, "num_classes must be >= 2"),
        ("stem", "big", "stem must be one of"),
        ("activation", "tanh", "activation must be one of"),
        ("skips", "some", "skips must be one of"),
        ("block", "bottleneck", "depth 18 uses 'basic' blocks"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        ResNetConfig(**{field: value})


def test_config_round_trips_through_dict():
    config = ResNetConfig(depth=50, width=8, skips="annealed")
    assert config.block == "bottleneck"
    assert ResNetConfig.from_dict(config.to_dict()) == config
