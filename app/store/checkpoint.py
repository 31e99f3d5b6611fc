"""Reading and writing checkpoints: ``manifest.json`` beside ``weights.safetensors``.

Loading never executes code from a checkpoint. Weights are read with safetensors; a ``.pt`` state dict is
accepted only through ``torch.load(weights_only=True)``, whose restricted unpickler refuses every global
that is not a tensor type, and the result must be a flat mapping of names to tensors. Every failure is a
:class:`CheckpointError` that names the file, relative to the model store, and what is wrong.

Given the :class:`ModelStore` a folder belongs to, every file is read from its real path, which must lie in
the store (see :mod:`app.store.paths`). The weights file is sized against the architecture before it is
hashed or read, so a manifest cannot make the loader read an arbitrarily large file into memory.
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
from app.nets.footprint import state_bytes
from app.store.errors import CheckpointError
from app.store.manifest import FORMAT, Architecture, InputSpec, Manifest, TrainingInfo, WeightsSpec
from app.store.paths import ModelStore

__all__ = [
    "MANIFEST_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "load_checkpoint",
    "read_manifest",
    "save_checkpoint",
]

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
_MAX_MANIFEST_BYTES = 1 << 20
_WEIGHTS_SLACK_BYTES = 16 << 20  # headers, names and alignment of a weights file, beyond its tensors


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: Path | str, *, store: ModelStore | None = None) -> Manifest:
    """Read and validate ``directory/manifest.json``.

    Args:
        directory: the checkpoint folder.
        store: the model store it belongs to; None: its parent, with symlinks followed anywhere.

    Raises:
        CheckpointError: for a missing, oversized, unreadable or invalid manifest, or one outside the store.
    """
    directory = Path(directory)
    store = store or ModelStore.around(directory)
    path = directory / MANIFEST_FILE
    name = store.name(path)
    store.resolve(directory)
    real = store.resolve(path)
    try:
        if not real.is_file():
            raise CheckpointError(name, "missing manifest file")
        if real.stat().st_size > _MAX_MANIFEST_BYTES:
            raise CheckpointError(name, f"manifest is larger than {_MAX_MANIFEST_BYTES} bytes")
        text = real.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(name, f"unreadable manifest: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(name, f"manifest is not valid JSON: {exc}") from None
    return _parse_manifest(name, text)


def _parse_manifest(name: str, text: str) -> Manifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(name, f"manifest is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(name, f"manifest must be a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise CheckpointError(name, f"unknown format {data.get('format')!r}, expected {FORMAT!r}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors())
        raise CheckpointError(name, f"invalid manifest: {problems}") from None


def _read_tensors(real: Path, name: str, store: ModelStore) -> dict[str, torch.Tensor]:
    def problem(exc: BaseException) -> str:  # library errors may quote the absolute path
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return store.scrub(text.replace(str(real), name))

    if real.suffix == ".safetensors":
        try:
            return load_file(str(real), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(name, f"unreadable safetensors file: {problem(exc)}") from None
    try:
        state = torch.load(real, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(name, f"refused .pt file (only plain tensor state dicts load): {problem(exc)}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(name, "a .pt file must hold a flat mapping of names to tensors")
    return dict(state)


def _check_state(name: str, model: ResNet, state: Mapping[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(name, f"missing tensors: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if unexpected:
        raise CheckpointError(
            name, f"unexpected tensors: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}"
        )
    for key, ref in expected.items():
        got = state[key]
        if got.shape != ref.shape:
            raise CheckpointError(name, f"tensor {key} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}")
        if got.is_floating_point() != ref.is_floating_point():
            raise CheckpointError(name, f"tensor {key} has dtype {got.dtype}, expected {ref.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(name, f"tensor {key} holds NaN or infinite values")


def _check_weights_file(real: Path, name: str, manifest: Manifest) -> None:
    """Refuse a missing weights file, or one larger than the architecture's tensors in float64, before reading it."""
    try:
        if not real.is_file():
            raise CheckpointError(name, "missing weights file")
        size = real.stat().st_size
    except OSError as exc:
        raise CheckpointError(name, f"unreadable weights file: {exc.strerror or type(exc).__name__}") from None
    limit = 2 * state_bytes(manifest.architecture.to_config()) + _WEIGHTS_SLACK_BYTES
    if size > limit:
        raise CheckpointError(
            name, f"weights file has {size} bytes, more than the {limit} bytes that the manifest's architecture needs"
        )


def load_checkpoint(
    directory: Path | str, *, device: str | torch.device = "cpu", store: ModelStore | None = None
) -> tuple[Manifest, ResNet]:
    """Load a checkpoint folder into a model in eval mode.

    Args:
        directory: a folder holding ``manifest.json`` and the weights file it names.
        device: where to put the model.
        store: the model store the folder belongs to: its files must lie in it, and messages name them
            relative to it. None: the folder's parent, with symlinks followed anywhere (command line tools).

    Returns:
        The validated manifest and the model, strictly loaded, in eval mode.

    Raises:
        CheckpointError: for anything wrong with the folder, the manifest or the weights.
    """
    directory = Path(directory)
    store = store or ModelStore.around(directory)
    manifest = read_manifest(directory, store=store)
    weights = directory / manifest.weights.file
    name, real = store.name(weights), store.resolve(weights)
    _check_weights_file(real, name, manifest)
    try:
        digest = sha256_file(real)
    except OSError as exc:
        raise CheckpointError(name, f"unreadable weights file: {exc.strerror or type(exc).__name__}") from None
    if digest != manifest.weights.sha256:
        raise CheckpointError(name, f"sha256 mismatch: file has {digest}, manifest says {manifest.weights.sha256}")
    state = _read_tensors(real, name, store)
    with torch.device("meta"):  # no random initial weights that the checkpoint's would replace: one copy in memory
        model = build_resnet(manifest.architecture.to_config())
    _check_state(name, model, state)
    state = {key: _as_float32(tensor) for key, tensor in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return manifest, model.eval().to(device)


def _as_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Floating tensors as float32 (the model's dtype; a copy only where the file held another)."""
    return tensor.float() if tensor.is_floating_point() else tensor


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
