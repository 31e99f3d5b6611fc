"""What a ResNet holds and computes, worked out from its configuration alone: no tensor is allocated.

A model can then be sized before it is built (``app.serving.loading`` refuses one over
``FOLDSERVE_MAX_MODEL_BYTES``). The stages come from :data:`app.nets.resnet.DEPTHS` and the expansions
from the block classes, the table :class:`app.nets.ResNet` is built from, so a depth added there is sized
here too; ``tests/nets/test_footprint.py`` holds every count equal to that of the built network.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.nets.resnet import DEPTHS, BasicBlock, Bottleneck, ResNetConfig

__all__ = [
    "Conv",
    "convolutions",
    "feature_map_elements",
    "forward_bytes",
    "largest_layer_elements",
    "parameter_count",
    "state_bytes",
]

_FLOAT_BYTES = 4  # parameters and statistics are float32
_COUNTER_BYTES = 8  # each batch norm's num_batches_tracked is one int64
_BLOCK_LIVE_MAPS = 6
"""Feature maps alive at once around a convolution inside a block, without gradients, each as large as the larger of
its input and output: the block's input, its residual, the shortcut, the weighted shortcut, their sum, and one
for the allocator's slack."""


@dataclass(frozen=True)
class Conv:
    """One convolution of the network (each is followed by a batch norm) at a given input size."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    in_size: tuple[int, int]  # (height, width) of its input
    out_size: tuple[int, int]  # (height, width) of its output

    @property
    def weight_elements(self) -> int:
        return self.in_channels * self.out_channels * self.kernel**2

    @property
    def input_elements(self) -> int:
        return self.in_channels * self.in_size[0] * self.in_size[1]

    @property
    def output_elements(self) -> int:
        return self.out_channels * self.out_size[0] * self.out_size[1]

    @property
    def column_elements(self) -> int:
        """The im2col buffer of one image (CPU convolutions without oneDNN, e.g. float64); 0 for a plain 1x1."""
        if self.kernel == 1 and self.stride == 1:
            return 0
        return self.in_channels * self.kernel**2 * self.out_size[0] * self.out_size[1]


def _downsample(size: tuple[int, int], stride: int) -> tuple[int, int]:
    # every conv and pool here pads by kernel // 2, so the output is ceil(size / stride)
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, size: tuple[int, int]) -> Conv:
    return Conv(in_ch, out_ch, kernel, stride, size, _downsample(size, stride))


def _stem(config: ResNetConfig, size: tuple[int, int]) -> list[Conv]:
    if config.stem == "small":
        return [_conv(config.in_channels, config.width, 3, 1, size)]
    return [_conv(config.in_channels, config.width, 7, 2, size)]


def _block(config: ResNetConfig, in_ch: int, planes: int, stride: int, size: tuple[int, int]) -> list[Conv]:
    """The convolutions of one block, as :class:`BasicBlock` and :class:`Bottleneck` build them."""
    if config.block == "basic":
        out_ch = planes * BasicBlock.expansion
        convs = [_conv(in_ch, planes, 3, stride, size)]
        convs.append(_conv(planes, out_ch, 3, 1, convs[0].out_size))
    else:
        out_ch = planes * Bottleneck.expansion
        convs = [_conv(in_ch, planes, 1, 1, size)]
        convs.append(_conv(planes, planes, 3, stride, size))
        convs.append(_conv(planes, out_ch, 1, 1, convs[1].out_size))
    if config.skips != "none" and (stride != 1 or in_ch != out_ch):
        convs.append(_conv(in_ch, out_ch, 1, stride, size))  # the projection shortcut
    return convs


def convolutions(config: ResNetConfig, height: int = 1, width: int = 1) -> list[Conv]:
    """Every convolution of the network in forward order, for ``height`` x ``width`` inputs.

    The sizes matter only for feature maps; weights are the same at any input size.
    """
    convs = _stem(config, (height, width))
    size = convs[0].out_size if config.stem == "small" else _downsample(convs[0].out_size, 2)  # max/avg pool
    in_ch = config.width
    for stage, count in enumerate(DEPTHS[config.depth][1]):
        planes = config.width * 2**stage
        for index in range(count):
            block = _block(config, in_ch, planes, 2 if stage > 0 and index == 0 else 1, size)
            convs += block
            in_ch, size = block[-1].out_channels, block[-1].out_size
    return convs


def _num_features(config: ResNetConfig) -> int:
    expansion = BasicBlock.expansion if config.block == "basic" else Bottleneck.expansion
    return config.width * 2 ** (len(DEPTHS[config.depth][1]) - 1) * expansion


def parameter_count(config: ResNetConfig) -> int:
    """Learned numbers: convolution weights, batch-norm scales and shifts, and the classifier."""
    convs = sum(c.weight_elements + 2 * c.out_channels for c in convolutions(config))
    return convs + (_num_features(config) + 1) * config.num_classes


def largest_layer_elements(config: ResNetConfig) -> int:
    """Numbers held by the largest single layer: a convolution with a bias (as batch-norm folding leaves it),
    or the classifier. Batch norms and skip weights hold far fewer."""
    convs = max(c.weight_elements + c.out_channels for c in convolutions(config))
    return max(convs, (_num_features(config) + 1) * config.num_classes)


def state_bytes(config: ResNetConfig) -> int:
    """Bytes of the network's state dict: parameters, batch-norm statistics and counters, skip weights."""
    convs = convolutions(config)
    statistics = sum(2 * c.out_channels for c in convs)
    skip_weights = sum(DEPTHS[config.depth][1]) if config.skips == "annealed" else 0
    floats = parameter_count(config) + statistics + skip_weights
    return floats * _FLOAT_BYTES + len(convs) * _COUNTER_BYTES


def feature_map_elements(config: ResNetConfig, height: int, width: int) -> list[int]:
    """Elements of every feature map a forward pass of one image produces (each conv's output, the pooled
    stem), in forward order; the largest few are live at once, and autograd keeps them all."""
    convs = convolutions(config, height, width)
    maps = [c.output_elements for c in convs]
    if config.stem == "imagenet":
        pooled = _downsample(convs[0].out_size, 2)
        maps.insert(1, config.width * pooled[0] * pooled[1])
    return maps


def forward_bytes(
    config: ResNetConfig, input_shape: tuple[int, int, int], batch: int, element_bytes: int, *, autograd: bool = False
) -> int:
    """An upper bound on the memory one forward pass allocates, besides its input and the weights.

    Args:
        config: the architecture.
        input_shape: ``(C, H, W)`` of one input.
        batch: inputs in the pass.
        element_bytes: 4 for float32, 8 for float64.
        autograd: the pass records a graph for a backward pass, which keeps every convolution's input.

    The bound is the largest, over convolutions, of the maps alive around it plus its im2col buffer (CPU
    convolutions that oneDNN does not run, float64 among them, unfold their input first; measured: a float64
    ResNet-18 forward at 3x64x64 peaks at 415 MiB for a batch of 32, 288 MiB of it the largest unfolded input).
    Around the stem, the image, the conv's output and the batch norm's are alive; around a block's
    convolution, :data:`_BLOCK_LIVE_MAPS` maps.
    """
    channels, height, width = input_shape
    stem, *blocks = convolutions(config, height, width)
    live = max(
        channels * height * width + 2 * stem.output_elements + stem.column_elements,
        *(_BLOCK_LIVE_MAPS * max(c.input_elements, c.output_elements) + c.column_elements for c in blocks),
    )
    if autograd:
        live += stem.input_elements + sum(c.input_elements for c in blocks)
    return batch * element_bytes * live
