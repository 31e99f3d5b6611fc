"""Named training recipes: the three shipped models and the paper's ResNet34 (trained on demand).

``python -m app train --preset NAME`` starts from one of these; any flag given beside it overrides the
preset's value, and the manifest records the full command with every value spelled out.

The shipped models are ResNet18s of width 16 (0.7 M parameters, 2.8 MB of float32 weights), 15 epochs,
small enough to train on one CPU thread in a few minutes each. The paper's
experiments use a full-width (64) ResNet34 on MNIST; its presets are here so that the experiment can be
rerun, but they are not shipped (85 MB each, and they need a GPU to train in reasonable time).
"""

from __future__ import annotations

from dataclasses import replace

from app.nets import ResNetConfig
from app.training.loop import TrainConfig
from app.training.schedules import SkipSchedule

__all__ = ["PRESETS", "SHIPPED", "get_preset"]

_R18 = ResNetConfig(depth=18, width=16, in_channels=1, num_classes=10, stem="small")
_R34 = ResNetConfig(depth=34, width=64, in_channels=1, num_classes=10, stem="small")

_ANNEALED = SkipSchedule(kind="linear", t0=0.5, unit="fraction")


def _linear(architecture: ResNetConfig, *, epochs: int) -> TrainConfig:
    # Without ReLUs nothing bounds the activations between batch norms; AdamW at a small rate is the
    # conservative choice for a deep linear network.
    arch = replace(architecture, activation="identity")
    return TrainConfig(architecture=arch, epochs=epochs, optimizer="adamw", lr=2e-3, weight_decay=0.01)


PRESETS: dict[str, TrainConfig] = {
    "resnet18-mnist": TrainConfig(architecture=_R18, epochs=15),
    "annealed-resnet18-mnist": TrainConfig(architecture=replace(_R18, skips="annealed"), epochs=15, schedule=_ANNEALED),
    "linear-resnet18-mnist": _linear(_R18, epochs=15),
    # The paper's setting: ResNet34 at full width. Documented, trained on demand, not shipped.
    "resnet34-mnist-paper": TrainConfig(architecture=_R34, epochs=30),
    "annealed-resnet34-mnist-paper": TrainConfig(
        architecture=replace(_R34, skips="annealed"), epochs=30, schedule=_ANNEALED
    ),
    "linear-resnet34-mnist-paper": _linear(_R34, epochs=30),
}
"""Every preset, by the name its checkpoint gets."""

SHIPPED = ("linear-resnet18-mnist", "annealed-resnet18-mnist", "resnet18-mnist")
"""The presets whose checkpoints live in ``model_store/``."""


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name``.

    Raises:
        ValueError: naming the valid presets when ``name`` is not one.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
