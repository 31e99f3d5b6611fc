"""Test accuracy of a checkpoint and of its simplified network, and how often the two agree.

The test digits are rebuilt from the data spec recorded in the manifest (``training.extra.data``), so a
model is evaluated on exactly the digits held out when it was trained, normalised with the manifest's
own mean and standard deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.nets import ResNet
from app.simplify import Simplified, simplify
from app.store import Manifest, load_checkpoint
from app.training.data import DataSpec, Digits, load_digits
from app.training.loop import accuracy, resolve_device
from app.training.record import SAMPLES_FILE, load_samples

__all__ = ["data_spec_of", "evaluate_checkpoint", "evaluate_model", "test_set_of"]


def data_spec_of(manifest: Manifest, *, data_dir: str | None = None, download: bool = False) -> DataSpec:
    """The data spec a checkpoint was trained on (the default spec when the manifest does not say)."""
    recorded = manifest.training.extra.get("data") if manifest.training is not None else None
    spec = DataSpec.from_dict(recorded) if isinstance(recorded, dict) else DataSpec()
    if data_dir is not None:
        spec = DataSpec.from_dict({**spec.to_dict(), "data_dir": data_dir, "download": download})
    return spec


def test_set_of(manifest: Manifest, data: Digits) -> tuple[torch.Tensor, torch.Tensor]:
    """``data``'s test digits, normalised with the manifest's statistics rather than ``data``'s own."""
    mean, std = manifest.input.mean[0], manifest.input.std[0]
    images = (data.test_images * data.std + data.mean - mean) / std
    return images, data.test_labels


@torch.no_grad()
def evaluate_model(
    model: ResNet, simplified: Simplified, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> dict[str, Any]:
    """Accuracy of ``model`` and of ``simplified`` on the digits, their agreement and largest logit gap."""
    _, acc_original, pred_original = accuracy(model, images, labels, device=device)
    _, acc_simplified, pred_simplified = accuracy(simplified.module, images, labels, device=device)
    gap = 0.0
    for start in range(0, len(labels), 500):
        x = images[start : start + 500].to(device)
        gap = max(gap, float((model(x) - simplified.module(x)).abs().max()))
    return {
        "test_size": len(labels),
        "accuracy_original": acc_original,
        "accuracy_simplified": acc_simplified,
        "agreement": float((pred_original == pred_simplified).float().mean()),
        "max_abs_logit_difference": gap,
    }


def evaluate_checkpoint(
    model_dir: Path | str, *, data_dir: str | None = None, download: bool = False, device: str = "cpu"
) -> dict[str, Any]:
    """Load, simplify (verifying on the stored sample digits) and evaluate one checkpoint.

    Returns:
        ``name``, the accuracies, agreement and logit gap of :func:`evaluate_model`, the manifest's recorded
        ``recorded_accuracy`` and the ``simplification`` report.
    """
    dev = resolve_device(device)
    manifest, model = load_checkpoint(model_dir, device=dev)
    samples = load_samples(model_dir)[0] if (Path(model_dir) / SAMPLES_FILE).is_file() else None
    simplified = simplify(model, manifest.input.shape, samples=samples)
    images, labels = test_set_of(manifest, load_digits(data_spec_of(manifest, data_dir=data_dir, download=download)))
    report = evaluate_model(model, simplified, images, labels, dev)
    recorded = manifest.training.test_accuracy if manifest.training is not None else None
    return {"name": manifest.name, **report, "recorded_accuracy": recorded, "simplification": simplified.report}
