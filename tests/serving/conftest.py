"""Tiny checkpoints, fast settings and image helpers for the serving tests."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.nets import ResNetConfig, build_resnet, set_skip_weight
from app.store import InputSpec, save_checkpoint
from tests.server import eventually

SIZE = 12  # input height and width of the test models
MEAN, STD = 0.25, 0.5
LABELS = [f"class-{i}" for i in range(5)]


def build_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A width-4 ResNet-18 with random batch-norm statistics: linear, annealed (skips at 0) or standard."""
    torch.manual_seed(seed)
    config = ResNetConfig(
        depth=18,
        width=4,
        in_channels=1,
        num_classes=len(LABELS),
        activation="identity" if kind == "linear" else "relu",
        skips="annealed" if kind in ("linear", "annealed") else "standard",
    )
    model = build_resnet(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    if kind == "annealed":
        set_skip_weight(model, 0.0)
    return model.eval()


def write_checkpoint(root: Path, name: str, kind: str = "linear", seed: int = 0) -> Path:
    """Save a tiny model as ``root/name`` and return the folder."""
    directory = root / name
    spec = InputSpec(channels=1, height=SIZE, width=SIZE, mean=[MEAN], std=[STD])
    save_checkpoint(directory, build_model(kind, seed), name=name, input=spec, labels=LABELS)
    return directory


def fast_settings(store: Path, **overrides: Any) -> Settings:
    """Settings that load a tiny model in well under a second."""
    values: dict[str, Any] = {
        "model_store": store,
        "device": "cpu",
        "warmup_runs": 1,
        "speedup_rounds": 2,
        "speedup_block_seconds": 0.0,
        "verification_samples": 4,
        "max_batch_size": 8,
        "batch_size": "max",  # plumbing tests count on batches of max_batch_size (tests/runtimes measure them)
        "max_wait_ms": 1.0,
        "max_queue_size": 64,
        "request_timeout_s": 10.0,
        "grpc_port": 0,  # in-process apps serve no gRPC (tests/serving/v2/test_wire.py runs a real server)
        **overrides,
    }
    return Settings(**values)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    """``array`` encoded as PNG (uint8 gray or RGB(A), or uint16 gray)."""
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_png(seed: int = 0, size: int = 20) -> bytes:
    """A random grayscale image, different for every seed."""
    rng = np.random.default_rng(seed)
    return png(rng.integers(0, 256, (size, size), dtype=np.uint8))


def wait_until_loaded(client: TestClient, timeout: float = 30.0) -> dict[str, Any]:
    """Poll /models until no model is loading; returns its last body."""

    def loaded() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get("/models").json()
        return body if all(m["status"] != "loading" for m in body["models"]) else None

    return eventually(loaded, "every model loaded", timeout)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store shared by the tests that only read it: a linear and an annealed model."""
    root = tmp_path_factory.mktemp("store")
    write_checkpoint(root, "annealed", kind="annealed", seed=1)
    write_checkpoint(root, "linear", kind="linear", seed=0)
    return root


@pytest.fixture(scope="session")
def annealed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with only the annealed model, which loads fastest."""
    root = tmp_path_factory.mktemp("annealed-store")
    write_checkpoint(root, "annealed", kind="annealed", seed=1)
    return root


@pytest.fixture
def make_settings(store: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return fast_settings(overrides.pop("model_store", store), **overrides)

    return make
