"""Checkpoints: ``manifest.json`` (a pydantic schema) plus ``weights.safetensors``, sha256 checked, read only from
inside their model store."""

from app.store.checkpoint import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from app.store.manifest import FORMAT, Architecture, InputSpec, Manifest, TrainingInfo, WeightsSpec
from app.store.paths import ModelStore
from app.store.registry import discover_models

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "WEIGHTS_FILE",
    "Architecture",
    "CheckpointError",
    "InputSpec",
    "Manifest",
    "ModelStore",
    "TrainingInfo",
    "WeightsSpec",
    "discover_models",
    "load_checkpoint",
    "read_manifest",
    "save_checkpoint",
]
