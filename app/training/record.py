"""Writing a trained network out: checkpoint (through :mod:`app.store`), history and sample digits.

Beside ``manifest.json`` and ``weights.safetensors`` a trained model's folder holds

* ``history.json``: one row per epoch (losses, accuracies, skip weight, learning rate, seconds), read by
  ``reproduce`` to plot the training curves;
* ``samples.safetensors``: a few real test digits (``images`` ``[N, 1, 28, 28]`` float32, normalised;
  ``labels`` int64), two per class, so the server can verify a simplification on real images.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from app.store import InputSpec, Manifest, TrainingInfo, save_checkpoint
from app.training.data import Digits
from app.training.loop import TrainConfig, TrainResult

__all__ = [
    "HISTORY_FILE",
    "SAMPLES_FILE",
    "load_history",
    "load_samples",
    "run_details",
    "save_run",
    "training_record",
    "write_run_files",
]

HISTORY_FILE = "history.json"
SAMPLES_FILE = "samples.safetensors"
_SAMPLES_PER_CLASS = 2


def _pick_samples(images: torch.Tensor, labels: torch.Tensor, limit: int | None) -> dict[str, torch.Tensor]:
    """The first two test images of each label, in their order, at most ``limit``: what verification runs on."""
    keep: list[int] = []
    for label in sorted(set(labels.tolist())):
        keep.extend((labels == label).nonzero().flatten()[:_SAMPLES_PER_CLASS].tolist())
    index = torch.tensor(sorted(keep)[:limit])
    return {"images": images[index].contiguous(), "labels": labels[index].contiguous()}


def write_run_files(
    directory: Path, history: list[dict[str, float]], images: torch.Tensor, labels: torch.Tensor, limit: int | None
) -> None:
    """Beside a checkpoint: the per-epoch history, and sample images picked from the test split (at most ``limit``)."""
    (directory / HISTORY_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    save_file(_pick_samples(images, labels, limit), str(directory / SAMPLES_FILE))
    (directory / SAMPLES_FILE).chmod(0o644)  # safetensors writes 0600; the service may run as another user


def run_details(config: TrainConfig, result: TrainResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """The skip schedule's record, and the recipe's: seed, optimiser settings, device and training time."""
    schedule: dict[str, Any] = {"kind": "none"}
    if config.schedule is not None:
        schedule = {**config.schedule.to_dict(), "t0_epochs": config.schedule.t0_epochs(config.epochs)}
    recipe = {k: getattr(config, k) for k in ("batch_size", "optimizer", "lr", "weight_decay", "augment", "amp")}
    details = {"seed": config.seed, **recipe, "device": result.device, "train_seconds": round(result.seconds, 2)}
    return schedule, details


def training_record(config: TrainConfig, data: Digits, result: TrainResult, command: str) -> TrainingInfo:
    """The manifest's ``training`` section: dataset, split, schedule, accuracy, command and the details."""
    schedule, details = run_details(config, result)
    extra = {
        "data": data.spec.to_dict(),
        "train_size": len(data.train_labels),
        "test_size": len(data.test_labels),
        **details,
        "final_train_loss": result.history[-1]["train_loss"] if result.history else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "history_file": HISTORY_FILE,
    }
    return TrainingInfo(
        dataset=data.dataset,
        split=data.split,
        epochs=config.epochs,
        skip_schedule=schedule,
        test_accuracy=result.test_accuracy,
        command=command,
        extra=extra,
    )


def save_run(
    directory: Path | str, name: str, config: TrainConfig, data: Digits, result: TrainResult, command: str
) -> Manifest:
    """Write the checkpoint, ``history.json`` and ``samples.safetensors`` into ``directory``."""
    directory = Path(directory)
    spec = InputSpec(channels=1, height=28, width=28, mean=[data.mean], std=[data.std])
    labels = [str(i) for i in range(config.architecture.num_classes)]
    training = training_record(config, data, result, command)
    manifest = save_checkpoint(directory, result.model, name=name, input=spec, labels=labels, training=training)
    write_run_files(directory, result.history, data.test_images, data.test_labels, limit=None)
    return manifest


def load_history(directory: Path | str) -> list[dict[str, float]]:
    """The per-epoch history saved beside a checkpoint (an empty list when there is none)."""
    path = Path(directory) / HISTORY_FILE
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of per-epoch rows")
    return rows


def load_samples(directory: Path | str) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample digits saved beside a checkpoint: normalised images and their labels."""
    tensors = load_file(str(Path(directory) / SAMPLES_FILE))
    return tensors["images"], tensors["labels"]
