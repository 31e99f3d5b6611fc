"""Sizes worked out from a configuration equal those of the network built from it, for every depth in DEPTHS."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from app.nets import DEPTHS, ResNetConfig, build_resnet
from app.nets.footprint import convolutions, feature_map_elements, forward_bytes, parameter_count, state_bytes

CONFIGS = [
    ResNetConfig(depth=depth, width=4, in_channels=3, num_classes=7, stem=stem, skips=skips, activation=activation)
    for depth, stem, skips, activation in itertools.product(
        DEPTHS, ("small", "imagenet"), ("standard", "annealed", "none"), ("relu", "identity")
    )
]


def _ids(config: ResNetConfig) -> str:
    return f"{config.depth}-{config.stem}-{config.skips}-{config.activation}"


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_counts_equal_those_of_the_built_network(config: ResNetConfig) -> None:
    model = build_resnet(config).eval()
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())
    assert state_bytes(config) == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    maps: list[int] = []
    layers = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    for module in model.modules():
        if isinstance(module, layers):
            module.register_forward_hook(lambda m, i, out: maps.append(out.numel()))
    with torch.no_grad():
        model(torch.zeros(1, 3, 37, 29))  # odd sizes: every stride rounds up
    assert feature_map_elements(config, 37, 29) == maps


@pytest.mark.parametrize(
    ("depth", "expected"),
    [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)],  # torchvision's resnet18/34/50 with 1000 classes
)
def test_imagenet_parameter_counts_match_torchvision(depth: int, expected: int) -> None:
    config = ResNetConfig(depth=depth, width=64, in_channels=3, num_classes=1000, stem="imagenet")
    assert parameter_count(config) == expected


def test_the_manifest_of_issue_10_declares_9_3_billion_parameters() -> None:
    config = ResNetConfig(depth=50, width=1024, in_channels=3, num_classes=100_000, stem="imagenet")
    assert parameter_count(config) == 9_279_949_472


def test_convolutions_carry_their_sizes() -> None:
    config = ResNetConfig(depth=50, width=64, in_channels=3, num_classes=1000, stem="imagenet")
    stem, first, *_, last = convolutions(config, 224, 224)
    assert (stem.kernel, stem.stride, stem.in_size, stem.out_size) == (7, 2, (224, 224), (112, 112))
    assert stem.column_elements == 3 * 49 * 112 * 112
    assert (first.in_channels, first.kernel, first.in_size, first.column_elements) == (64, 1, (56, 56), 0)
    assert (last.in_channels, last.out_channels, last.out_size) == (512, 2048, (7, 7))  # the last 1x1 expansion


def test_forward_bytes_scales_with_batch_and_element_size() -> None:
    config = ResNetConfig(depth=18, width=8, in_channels=1, num_classes=10)
    one = forward_bytes(config, (1, 28, 28), 1, 4)
    # layer1: six 8x28x28 maps and the im2col buffer of a 3x3 conv over 8 channels at 28x28
    assert one == 4 * (6 * 8 * 28 * 28 + 8 * 9 * 28 * 28)
    assert forward_bytes(config, (1, 28, 28), 32, 8) == 64 * one
    assert forward_bytes(config, (1, 28, 28), 1, 4, autograd=True) > one


def test_forward_bytes_of_an_imagenet_stem() -> None:
    config = ResNetConfig(depth=18, width=64, in_channels=3, num_classes=1000, stem="imagenet")
    # the image, the stem conv's and its batch norm's 64x112x112 outputs and the 7x7 conv's unfolded input
    # outweigh layer1 (six 64x56x56 maps and a 3x3 unfold of 64 channels)
    stem = 3 * 224 * 224 + 2 * 64 * 112 * 112 + 3 * 49 * 112 * 112
    assert stem > 6 * 64 * 56 * 56 + 64 * 9 * 56 * 56
    assert forward_bytes(config, (3, 224, 224), 32, 8) == 32 * 8 * stem
