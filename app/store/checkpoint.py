"""Reading and writing checkpoints: ``manifest.json`` beside ``weights.safetensors``.

Loading never executes code from a checkpoint. Weights are read with safetensors; a ``.pt`` state dict is
accepted only through ``torch.load(weights_only=True)``, whose restricted unpickler refuses every global
that is not a tensor type, and the result must be a flat mapping of names to tensors. Every failure is a
:class:`CheckpointError` that names the path and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from app.nets import ResNet, build_resnet
from app.store.manifest import FORMAT, Architecture, InputSpec, Manifest, TrainingInfo, WeightsSpec

__all__ = ["MANIFEST_FILE", "WEIGHTS_FILE", "CheckpointError", "load_checkpoint", "read_manifest", "save_checkpoint"]

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
_MAX_MANIFEST_BYTES = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: the message names the path and what is wrong."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: Path | str) -> Manifest:
    """Read and validate ``directory/manifest.json``."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(path, "missing manifest file")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise CheckpointError(path, f"manifest is larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"manifest is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(path, f"manifest must be a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise CheckpointError(path, f"unknown format {data.get('format')!r}, expected {FORMAT!r}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors())
        raise CheckpointError(path, f"invalid manifest: {problems}") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(path, f"unreadable safetensors file: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"refused .pt file (only plain tensor state dicts load): {first_line}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(path, "a .pt file must hold a flat mapping of names to tensors")
    return dict(state)


def _check_state(path: Path, model: ResNet, state: Mapping[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(path, f"missing tensors: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if unexpected:
        raise CheckpointError(
            path, f"unexpected tensors: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}"
        )
    for key, ref in expected.items():
        got = state[key]
        if got.shape != ref.shape:
            raise CheckpointError(path, f"tensor {key} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}")
        if got.is_floating_point() != ref.is_floating_point():
            raise CheckpointError(path, f"tensor {key} has dtype {got.dtype}, expected {ref.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(path, f"tensor {key} holds NaN or infinite values")


def load_checkpoint(directory: Path | str, *, device: str | torch.device = "cpu") -> tuple[Manifest, ResNet]:
    """Load a checkpoint folder into a model in eval mode.

    Args:
        directory: a folder holding ``manifest.json`` and the weights file it names.
        device: where to put the model.

    Returns:
        The validated manifest and the model, strictly loaded, in eval mode.

    Raises:
        CheckpointError: for anything wrong with the folder, the manifest or the weights.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    weights = directory / manifest.weights.file
    if not weights.is_file():
        raise CheckpointError(weights, "missing weights file")
    digest = sha256_file(weights)
    if digest != manifest.weights.sha256:
        raise CheckpointError(weights, f"sha256 mismatch: file has {digest}, manifest says {manifest.weights.sha256}")
    state = _read_tensors(weights)
    model = build_resnet(manifest.architecture.to_config())
    _check_state(weights, model, state)
    model.load_state_dict(state, strict=True)
    return manifest, model.eval().to(device)


def save_checkpoint(
    directory: Path | str,
    model: ResNet,
    *,
    name: str,
    input: InputSpec,
    labels: list[str],
    training: TrainingInfo | None = None,
    version: str = "1",
) -> Manifest:
    """Write ``model`` to ``directory`` as ``weights.safetensors`` plus a ``manifest.json`` describing it.

    The architecture is taken from ``model.config``; the manifest is validated before anything is written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    placeholder = WeightsSpec(file=WEIGHTS_FILE, sha256="0" * 64)
    manifest = Manifest(
        format="foldserve/1",
        name=name,
        version=version,
        architecture=Architecture.from_config(model.config),
        input=input,
        labels=labels,
        weights=placeholder,
        training=training,
    )
    save_file(state, str(weights))
    weights.chmod(0o644)  # safetensors writes 0600; a service running as another user must read it
    manifest = manifest.model_copy(update={"weights": WeightsSpec(file=WEIGHTS_FILE, sha256=sha256_file(weights))})
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest
