"""Fixtures for the importer tests: a random torchvision ResNet-18, a labels file, the CLI run in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from app.__main__ import main
from tests.importers.support import IMAGENET, NUM_CLASSES, torchvision_resnet


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    return torchvision_resnet("resnet18")


@pytest.fixture
def state18(resnet18: nn.Module) -> dict[str, torch.Tensor]:
    """A fresh copy of the ResNet-18's state_dict, safe to tamper with."""
    return {k: v.clone() for k, v in resnet18.state_dict().items()}


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"class {i}\n" for i in range(NUM_CLASSES)), encoding="utf-8")
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Where the imports write: ``tmp_path/store/model`` (not created beforehand)."""
    return tmp_path / "store" / "model"


@pytest.fixture
def run_import(out: Path, labels: Path) -> Callable[..., int]:
    """``run_import(weights, arch="resnet18", *extra, source="torchvision")`` runs ``python -m app import``
    in-process into ``out`` and returns its exit code."""

    def run(weights: Path, arch: str = "resnet18", *extra: str, source: str = "torchvision") -> int:
        args = ["import", source, arch, str(weights), "--out", str(out), "--labels", str(labels)]
        return main([*args, "--input", "3x64x64", *IMAGENET, *extra])

    return run
