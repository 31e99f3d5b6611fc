"""ResNets for foldserve: basic and bottleneck blocks, a linear mode, and annealable skips.

A block computes ``act(residual(x) + s * shortcut(x))``. With ``skips="standard"`` the weight ``s`` is
the constant 1 and is not stored; with ``skips="annealed"`` it is a scalar buffer ``skip_weight`` that
training lowers from 1 to 0 and that is saved in the state dict, so a loaded network knows which of
its skips may be stripped. A block whose ``shortcut`` is ``None`` has no skip at all: that is what
:func:`app.simplify.strip_zero_skips` leaves behind.

With ``activation="identity"`` every activation is the identity and every pooling is an average, so
the whole network is an affine map of its input (see :func:`app.simplify.collapse_affine`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

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

# Blocks per stage, as in He et al. (2016), table 1.
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture of a ResNet, as stored in a checkpoint's manifest."""

    depth: int = 18  # 18 and 34 use basic blocks, 50, 101 and 152 use bottlenecks
    block: Literal["basic", "bottleneck"] | None = None  # None: the depth's own block kind
    width: int = 64  # channels of the first stage; stages use width, 2w, 4w, 8w (x4 in bottlenecks)
    in_channels: int = 1  # 1 for grayscale digits, 3 for RGB
    num_classes: int = 10
    stem: Literal["small", "imagenet"] = "small"  # small: 3x3 stride-1 conv, no pool (28-32 px inputs)
    activation: Literal["relu", "identity"] = "relu"  # identity makes the network affine
    skips: Literal["standard", "annealed", "none"] = "standard"  # annealed: a skip-weight buffer per block;
    # none: a plain CNN with no skips at all (what stripping an annealed network leaves)

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {self.depth}")
        if self.block is None:
            object.__setattr__(self, "block", DEPTHS[self.depth][0])
        if self.block != DEPTHS[self.depth][0]:
            raise ValueError(f"depth {self.depth} uses {DEPTHS[self.depth][0]!r} blocks, got block={self.block!r}")
        for name in ("width", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        _check_choice("stem", self.stem, ("small", "imagenet"))
        _check_choice("activation", self.activation, ("relu", "identity"))
        _check_choice("skips", self.skips, ("standard", "annealed", "none"))

    @property
    def linear(self) -> bool:
        """True when the network has no nonlinearity and so is an affine map."""
        return self.activation == "identity"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetConfig:
        return cls(**data)


def _check_choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")


def _activation(kind: str) -> nn.Module:
    return nn.ReLU(inplace=True) if kind == "relu" else nn.Identity()


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


class _Block(nn.Module):
    """What basic and bottleneck blocks share: the shortcut, its weight, and the final activation."""

    expansion = 1
    skip_weight: torch.Tensor

    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str, skips: str) -> None:
        super().__init__()
        self.shortcut: nn.Module | None
        if skips == "none":
            self.shortcut = None
        elif stride != 1 or in_ch != out_ch:
            self.shortcut = _conv_bn(in_ch, out_ch, 1, stride)
        else:
            self.shortcut = nn.Identity()
        if skips == "annealed":
            self.register_buffer("skip_weight", torch.ones(()))
        self.act = _activation(activation)

    @property
    def annealed(self) -> bool:
        return "skip_weight" in self._buffers

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut is not None:
            skip = self.shortcut(x)
            out = out + self.skip_weight * skip if self.annealed else out + skip
        return self.act(out)


class BasicBlock(_Block):
    """Two 3x3 convolutions, as in ResNet-18 and -34."""

    def __init__(self, in_ch: int, planes: int, stride: int, activation: str, skips: str) -> None:
        super().__init__(in_ch, planes, stride, activation, skips)
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = _activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, as in ResNet-50, -101 and -152."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, activation: str, skips: str) -> None:
        super().__init__(in_ch, planes * self.expansion, stride, activation, skips)
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = _activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = _activation(activation)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(nn.Module):
    """A ResNet: stem, four stages of blocks, global average pooling and a linear classifier.

    ``forward_features`` returns the last stage's feature map and ``forward_head`` turns it into
    logits, as in timm.
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        block_cls: type[_Block] = BasicBlock if config.block == "basic" else Bottleneck
        _, counts = DEPTHS[config.depth]
        if config.stem == "small":
            self.stem = nn.Sequential(*_conv_bn(config.in_channels, config.width, 3), _activation(config.activation))
        else:
            conv = nn.Conv2d(config.in_channels, config.width, 7, stride=2, padding=3, bias=False)
            pool: nn.Module = (
                nn.MaxPool2d(3, stride=2, padding=1)
                if config.activation == "relu"
                else nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)
            )
            self.stem = nn.Sequential(conv, nn.BatchNorm2d(config.width), _activation(config.activation), pool)
        in_ch = config.width
        stages = []
        for i, count in enumerate(counts):
            planes = config.width * 2**i
            blocks = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block_cls(in_ch, planes, stride, config.activation, config.skips))
                in_ch = planes * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, config.num_classes)
        self.num_features = in_ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def blocks(self) -> list[_Block]:
        """Every residual block, in order."""
        return [m for m in self.modules() if isinstance(m, _Block)]


def build_resnet(config: ResNetConfig) -> ResNet:
    """Build a randomly initialised ResNet (in training mode) from its configuration."""
    model = ResNet(config)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def set_skip_weight(model: nn.Module, value: float) -> None:
    """Set the weight of every annealed skip in ``model`` to ``value`` (in place)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"skip weight must be in [0, 1], got {value}")
    found = False
    for m in model.modules():
        if isinstance(m, _Block) and m.annealed:
            m.skip_weight.fill_(value)
            found = True
    if not found:
        raise ValueError("model has no annealed skips (build it with skips='annealed')")


def skip_weights(model: nn.Module) -> list[float]:
    """The weight of every skip in ``model``, in block order: 1.0 for standard skips, nothing for stripped ones."""
    weights = []
    for m in model.modules():
        if isinstance(m, _Block) and m.shortcut is not None:
            weights.append(float(m.skip_weight) if m.annealed else 1.0)
    return weights
