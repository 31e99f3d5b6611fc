"""Importing a torchvision-layout ResNet state_dict into a foldserve checkpoint.

One fixed order: read the weights safely, check their layout, build the app.nets model, check it against
torchvision's own model in float64, and only then write the checkpoint with :func:`app.store.save_checkpoint`.
foldserve did not train imported weights, so the manifest's ``training`` section records the dataset and split
as ``"unknown"`` and 0 epochs, and under ``extra.imported`` where the weights came from (source, arch, file
name and sha256), the float64 check and the library versions; ``command`` is the import command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from app.importers.torchvision import (
    build_model,
    check_against_torchvision,
    check_layout,
    config_for,
    num_classes_of,
    resolve_arch,
)
from app.importers.weights import ImportRefused, read_state_dict
from app.nets import ResNetConfig
from app.store import Architecture, InputSpec, Manifest, TrainingInfo, WeightsSpec, save_checkpoint
from app.store.checkpoint import sha256_file

__all__ = ["describe_validation_error", "import_resnet"]


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error on one line: ``field: message; field: message``."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{'.'.join(map(str, error['loc']))}: {message}" if error["loc"] else message)
    return "; ".join(problems)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImportRefused(f"--out {out} already exists and is not an empty folder; remove it or choose another")


def _check_manifest(config: ResNetConfig, *, name: str, version: str, input: InputSpec, labels: list[str]) -> None:
    """Validate everything the manifest will say before the expensive steps, so a typo fails at once."""
    try:
        Manifest(
            format="foldserve/1",
            name=name,
            version=version,
            architecture=Architecture.from_config(config),
            input=input,
            labels=labels,
            weights=WeightsSpec(file="weights.safetensors", sha256="0" * 64),
        )
    except ValidationError as exc:
        raise ImportRefused(f"invalid manifest: {describe_validation_error(exc)}") from None


def _record(source: str, arch: str, weights: Path, check: dict[str, Any], command: str) -> TrainingInfo:
    import torchvision

    imported = {
        "source": source,
        "arch": arch,
        "file": weights.name,
        "sha256": sha256_file(weights),
        "check": check,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    return TrainingInfo(dataset="unknown", split="unknown", epochs=0, command=command, extra={"imported": imported})


def import_resnet(
    source: str,
    arch: str,
    weights: Path,
    out: Path,
    *,
    input: InputSpec,
    labels: list[str],
    name: str,
    version: str = "1",
    num_classes: int | None = None,
    command: str = "",
) -> Manifest:
    """Import the ResNet state_dict in ``weights`` into the checkpoint folder ``out``.

    Args:
        source: ``"torchvision"`` or ``"timm"`` (the same tensor names).
        arch: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` or ``resnet152`` (timm: optionally ``.tag``).
        weights: a ``.pth``/``.pt`` state_dict (read with ``torch.load(weights_only=True)``) or ``.safetensors``.
        out: the checkpoint folder to create; it must not exist or be empty.
        input: the input size, preprocessing and normalisation the manifest records.
        labels: one per class.
        name: the model's name; version: its version.
        num_classes: classes of the network (default: the rows of the weights' ``fc.weight``).
        command: the command line, recorded in the manifest.

    Returns:
        The manifest written.

    Raises:
        ImportRefused: for anything wrong with the arguments or the weights; nothing is written then.
    """
    torch_arch = resolve_arch(source, arch)
    _check_out(out)
    state = read_state_dict(weights)
    config = config_for(torch_arch, num_classes if num_classes is not None else num_classes_of(state))
    _check_manifest(config, name=name, version=version, input=input, labels=labels)
    check_layout(state, torch_arch, config, weights.name)
    model, full_state = build_model(state, config)
    check = check_against_torchvision(torch_arch, model, full_state)
    training = _record(source, arch, weights, check, command)
    return save_checkpoint(out, model, name=name, input=input, labels=labels, training=training, version=version)
