"""torchvision's ResNet layout, which timm's ``resnet18`` … ``resnet152`` share, mapped onto :mod:`app.nets`.

=================================  ===================================
torchvision / timm                 app.nets
=================================  ===================================
``conv1``, ``bn1``                 ``stem.0``, ``stem.1``
``layerN.M.downsample.0``, ``.1``  ``layerN.M.shortcut.0``, ``.1``
``layerN.M.convK``, ``.bnK``       the same
``fc``                             the same
=================================  ===================================

Both networks compute the same function (7x7 stem and max pool, the stride on a bottleneck's 3x3 conv,
ReLU after the add, global average pool, one linear layer), but no import relies on that:
:func:`check_against_torchvision` runs torchvision's own model with the same weights in float64 and refuses
any difference. ResNeXt (``resnext*``) and wide ResNets (``wide_resnet*``) are refused: their bottlenecks
have grouped or wider 3x3 convolutions, which :mod:`app.nets` does not build. torchvision is imported only
when a model is checked, so registering the CLI command costs nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.importers.weights import ImportRefused
from app.nets import ResNet, ResNetConfig
from app.simplify import compare

__all__ = [
    "ARCHS",
    "CHECK_SIZE",
    "CHECK_TOLERANCE",
    "SOURCES",
    "build_model",
    "check_against_torchvision",
    "check_layout",
    "config_for",
    "expected_layout",
    "num_classes_of",
    "resolve_arch",
    "to_foldserve_key",
    "to_torchvision_key",
]

ARCHS: dict[str, int] = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
"""Supported architectures (torchvision's names) and their depths."""

SOURCES = ("torchvision", "timm")
"""Layouts read: timm's plain ResNets name their tensors exactly as torchvision does."""

_IN_CHANNELS = 3  # torchvision builds conv1 for RGB only
_CHECK_INPUTS = 2
CHECK_SIZE = (65, 67)
"""Height and width of the random check inputs: odd and unequal so that padding, rounding and a height/width
mix-up all show, and large enough (layer4 sees 3x3) that every tap of every 3x3 kernel is used."""
CHECK_TOLERANCE = 1e-6
"""Largest float64 difference, relative to the output scale, between foldserve's and torchvision's logits.
The two run the same operations on the same weights, so any real mapping error is far larger."""
_RENAMES = (("conv1.", "stem.0."), ("bn1.", "stem.1."))  # torchvision prefix, app.nets prefix (top level only)
_FEW = 3


def resolve_arch(source: str, arch: str) -> str:
    """torchvision's name for ``arch`` as given for ``source`` (timm's may carry a ``.tag`` such as ``.a1_in1k``).

    Raises:
        ImportRefused: an unknown source, or an architecture that is not supported (the message says which are).
    """
    if source not in SOURCES:
        raise ImportRefused(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    name = arch.split(".", 1)[0] if source == "timm" else arch
    if name in ARCHS:
        return name
    why = ""
    if name.startswith(("resnext", "wide_resnet")):
        why = " (ResNeXt and wide ResNets have grouped or wider 3x3 convolutions, which app.nets does not build)"
    raise ImportRefused(f"ARCH must be one of {', '.join(ARCHS)}, got {arch!r}{why}")


def config_for(arch: str, num_classes: int) -> ResNetConfig:
    """The :class:`ResNetConfig` of torchvision's ``arch`` with ``num_classes`` outputs."""
    return ResNetConfig(
        depth=ARCHS[arch],
        width=64,
        in_channels=_IN_CHANNELS,
        num_classes=num_classes,
        stem="imagenet",
        activation="relu",
        skips="standard",
    )


def num_classes_of(state: dict[str, torch.Tensor], default: int = 1000) -> int:
    """The classes of the weights' final layer, ``fc.weight``'s rows (``default`` if there is none to read)."""
    fc = state.get("fc.weight")
    return int(fc.shape[0]) if fc is not None and fc.ndim == 2 else default


def to_foldserve_key(key: str) -> str:
    """torchvision's name of a tensor -> app.nets' name of it."""
    for theirs, ours in _RENAMES:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return key.replace(".downsample.", ".shortcut.")


def to_torchvision_key(key: str) -> str:
    """app.nets' name of a tensor -> torchvision's name of it."""
    for theirs, ours in _RENAMES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    return key.replace(".shortcut.", ".downsample.")


def expected_layout(config: ResNetConfig) -> dict[str, torch.Tensor]:
    """Every tensor torchvision's model for ``config`` has, by torchvision's name (meta tensors: shape and dtype)."""
    with torch.device("meta"):
        model = ResNet(config)
    return {to_torchvision_key(k): v for k, v in model.state_dict().items()}


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:_FEW]) + (f" and {len(keys) - _FEW} more" if len(keys) > _FEW else "")


def check_layout(state: dict[str, torch.Tensor], arch: str, config: ResNetConfig, source: str) -> None:
    """Refuse weights that are not torchvision's ``arch`` with ``config.num_classes`` classes.

    ``num_batches_tracked`` counters may be missing (older torchvision and timm files drop them); nothing else.

    Raises:
        ImportRefused: naming unknown keys, missing keys, the first misshaped tensor with both shapes, or a
            tensor of the wrong kind or with NaN/infinite values.
    """
    expected = expected_layout(config)
    unknown = [k for k in state if k not in expected]
    if unknown:
        raise ImportRefused(
            f"{source}: {len(unknown)} keys that torchvision's {arch} does not have: {_few(unknown)}; "
            f"are these {arch} weights?"
        )
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ImportRefused(
            f"{source}: {len(missing)} keys of torchvision's {arch} missing: {_few(missing)}; are these {arch} weights?"
        )
    for key, tensor in state.items():
        ref = expected[key]
        if tensor.shape != ref.shape:
            raise ImportRefused(
                f"{source}: {key} has shape {tuple(tensor.shape)}, torchvision's {arch} with {config.num_classes} "
                f"classes expects {tuple(ref.shape)}"
            )
        if tensor.is_floating_point() != ref.is_floating_point():
            raise ImportRefused(f"{source}: {key} holds {tensor.dtype}, expected a tensor like {ref.dtype}")
        if tensor.is_floating_point() and tensor.numel() and not _finite(tensor):
            raise ImportRefused(f"{source}: {key} holds NaN or infinite values")


def _finite(tensor: torch.Tensor) -> bool:
    # min and max propagate NaN and are +-inf when any element is: as exact as isfinite().all(), and several
    # times faster on a ResNet-50's 25M weights
    return all(bool(torch.isfinite(bound)) for bound in torch.aminmax(tensor))


def _complete(state: dict[str, torch.Tensor], config: ResNetConfig) -> dict[str, torch.Tensor]:
    """``state`` in float32 (the dtype foldserve stores), with any missing batch-norm counter set to 0."""
    full = {k: v.float().contiguous() if v.is_floating_point() else v for k, v in state.items()}
    for key in expected_layout(config):
        full.setdefault(key, torch.zeros((), dtype=torch.long))  # only num_batches_tracked can be absent
    return full


def build_model(state: dict[str, torch.Tensor], config: ResNetConfig) -> tuple[ResNet, dict[str, torch.Tensor]]:
    """The app.nets model holding ``state`` (checked by :func:`check_layout`), in eval mode, and the completed
    float32 state in torchvision's names that it was built from."""
    full = _complete(state, config)
    with torch.device("meta"):  # no random initialisation: every tensor is assigned below
        model = ResNet(config)
    model.load_state_dict({to_foldserve_key(k): v for k, v in full.items()}, strict=True, assign=True)
    return model.eval(), full


def _reference(arch: str, state: dict[str, torch.Tensor], num_classes: int) -> nn.Module:
    import torchvision  # lazily: a second of import time that only an import needs

    with torch.device("meta"):
        reference = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    reference.load_state_dict(state, strict=True, assign=True)
    return reference.eval()


def check_against_torchvision(
    arch: str, model: ResNet, state: dict[str, torch.Tensor], *, seed: int = 0
) -> dict[str, Any]:
    """Compare ``model`` with torchvision's ``arch`` holding ``state`` (torchvision's names), in float64.

    Returns:
        :func:`app.simplify.compare`'s statistics, plus the input shape and the tolerance.

    Raises:
        ImportRefused: the logits differ by more than :data:`CHECK_TOLERANCE` of the output scale, or top-1 differs.
    """
    reference = _reference(arch, state, model.config.num_classes)
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(_CHECK_INPUTS, _IN_CHANNELS, *CHECK_SIZE, generator=gen, dtype=torch.float64)
    report = compare(reference, model, inputs)
    report.update(input_shape=list(inputs.shape), tolerance=CHECK_TOLERANCE)
    if not (report["max_rel_error"] <= CHECK_TOLERANCE and report["top1_agreement"] == 1.0):
        raise ImportRefused(
            f"foldserve's {arch} differs from torchvision's with the same weights: max error "
            f"{report['max_rel_error']:.3g} of the output scale (tolerance {CHECK_TOLERANCE:g}), top-1 agreement "
            f"{report['top1_agreement']:.2f}; nothing written"
        )
    return report
