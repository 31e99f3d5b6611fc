"""ResNet architectures that foldserve trains, stores, simplifies and serves."""

from app.nets.resnet import (
    DEPTHS,
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetConfig,
    build_resnet,
    set_skip_weight,
    skip_weights,
)

__all__ = [
    "DEPTHS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetConfig",
    "build_resnet",
    "set_skip_weight",
    "skip_weights",
]
