"""Annealing a served ResNet's skips away by fine-tuning (Joyce & Verschelde, section 4, applied after the fact).

A checkpoint with standard skips (trained here, or imported) gets a skip-weight buffer in every block, at 1, and
is fine-tuned while the weights fall to exactly 0 along a :class:`SkipSchedule`: cross-entropy on the labels
plus a distillation term on the original's logits, so the network keeps what it knew while it learns to do
without its skips. The result is a checkpoint with ``skips="annealed"`` whose every skip weight is 0, which
foldserve's load pipeline strips like any annealed model. :func:`write_annealed` checks both before anything
appears at the destination, and writes atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from app.nets import ResNet, skip_weights
from app.simplify import simplify
from app.store import Manifest, TrainingInfo, load_checkpoint, save_checkpoint
from app.training.distill import Distillation
from app.training.folders import LabelledImages
from app.training.loop import TrainConfig, TrainResult, accuracy, train
from app.training.record import HISTORY_FILE, load_samples, run_details, write_run_files

__all__ = ["Annealed", "anneal", "check_source", "training_info", "with_annealed_skips", "write_annealed"]

_MAX_SAMPLES = 32  # verification images shipped beside the checkpoint; a 1000-class model gets 32, not 2000


@dataclass
class Annealed:
    """A fine-tuned network with every skip weight at 0, and what it was made from."""

    source: Manifest
    source_model: ResNet  # standard skips, as loaded
    config: TrainConfig  # the recipe, with the annealed architecture
    result: TrainResult  # result.model: the annealed network, eval mode, on the CPU
    accuracy_before: float  # the source's, on the validation split
    distill: dict[str, float]  # weight and temperature


def check_source(manifest: Manifest) -> None:
    """Refuse a checkpoint whose skips cannot, or need not, be annealed away.

    Raises:
        ValueError: the network is linear, has no skips, or already has annealed skips.
    """
    arch, name = manifest.architecture, manifest.name
    if arch.activation == "identity":
        raise ValueError(
            f"{name} is a linear ResNet: it already collapses to one affine map at load; nothing to anneal"
        )
    if arch.skips == "none":
        raise ValueError(f"{name} is already a plain CNN (skips='none'): it has no skips to anneal")
    if arch.skips == "annealed":
        raise ValueError(f"{name} already has annealed skips (skips='annealed'); anneal a model with standard skips")


@torch.no_grad()
def with_annealed_skips(model: ResNet) -> ResNet:
    """A copy of ``model`` (standard skips) with a skip-weight buffer at 1 in every block: the same function."""
    config = replace(model.config, skips="annealed")
    with torch.device("meta"):
        annealed = ResNet(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for key in annealed.state_dict():
        if key.endswith("skip_weight"):
            state[key] = torch.ones(())
    annealed.load_state_dict(state, strict=True, assign=True)
    return annealed.eval()


def anneal(
    source_dir: Path,
    data: LabelledImages,
    config: TrainConfig,
    *,
    distill_weight: float = 1.0,
    temperature: float = 2.0,
    device: str = "auto",
    progress: bool = True,
) -> Annealed:
    """Fine-tune the checkpoint in ``source_dir`` on ``data`` while its skip weights fall to 0.

    ``config.architecture`` is replaced by the source's, with annealed skips; ``config.schedule`` is required.

    Raises:
        ValueError: the source cannot be annealed (:func:`check_source`), or the run would not end at weight 0.
    """
    manifest, source = load_checkpoint(source_dir)
    check_source(manifest)
    if config.schedule is None:
        raise ValueError("annealing needs a skip schedule")
    start = with_annealed_skips(source)
    config = replace(config, architecture=start.config)
    _, before, _ = accuracy(source, data.test_images, data.test_labels)
    teacher = Distillation(source, distill_weight, temperature)
    result = train(
        config, data, device=device, progress=progress, init=start, distill=teacher if distill_weight else None
    )
    return Annealed(manifest, source, config, result, before, {"weight": distill_weight, "temperature": temperature})


def _check_all_zero(model: ResNet) -> None:
    weights = skip_weights(model)
    left = sorted({f"{w:.3g}" for w in weights if w != 0.0})
    if not weights or left:
        raise RuntimeError(
            f"refusing to write: {sum(w != 0.0 for w in weights)} of {len(weights)} skip weights are not exactly 0 "
            f"({', '.join(left) or 'the model has no skips'})"
        )


def training_info(annealed: Annealed, data: LabelledImages, command: str) -> TrainingInfo:
    """The new manifest's ``training`` section: source, data, schedule, seeds, accuracy before and after."""
    result, source = annealed.result, annealed.source
    config = annealed.config
    assert config.schedule is not None
    schedule, details = run_details(config, result)
    extra = {
        "annealed_from": {"name": source.name, "version": source.version, "sha256": source.weights.sha256},
        **data.record,
        "train_size": len(data.train_labels),
        "val_size": len(data.test_labels),
        "accuracy_before": annealed.accuracy_before,
        "accuracy_after": result.test_accuracy,
        **details,
        "distill": annealed.distill,
        "torch": torch.__version__,
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


def write_annealed(
    out: Path, name: str, annealed: Annealed, data: LabelledImages, command: str, *, force: bool = False
) -> tuple[Manifest, dict[str, Any]]:
    """Write the annealed checkpoint (weights, manifest, history, sample images) to ``out``, atomically.

    Everything is written into a temporary folder beside ``out``, loaded back and simplified there (strict load,
    sha256, strip, float64 verification: what the server does), and only then renamed to ``out``; on any failure
    nothing is left behind. ``force`` replaces an existing ``out``.

    Returns:
        The manifest written and the simplification report of the checkpoint as loaded back.

    Raises:
        ValueError: ``out`` exists and ``force`` is not given.
        RuntimeError: a skip weight is not exactly 0, or the loaded-back checkpoint does not strip every skip.
    """
    model = annealed.result.model
    _check_all_zero(model)
    if out.exists() and not force:
        raise ValueError(f"--out {out} already exists; give --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the checkpoint goes one level down, so that a store polled meanwhile never sees a half-written model
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staged = scratch / "model"
        training = training_info(annealed, data, command)
        manifest = save_checkpoint(
            staged, model, name=name, input=annealed.source.input, labels=annealed.source.labels, training=training
        )
        write_run_files(staged, annealed.result.history, data.test_images, data.test_labels, limit=_MAX_SAMPLES)
        report = _check_strips(staged)
        _replace(staged, out, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest, report


def _check_strips(directory: Path) -> dict[str, Any]:
    """Load ``directory`` back as the server does and simplify it; refuse unless every skip is stripped."""
    manifest, model = load_checkpoint(directory)
    report = simplify(model, manifest.input.shape, samples=load_samples(directory)[0]).report
    if report["kind"] != "skips-stripped" or report["kept_skips"]:
        raise RuntimeError(
            f"refusing to write: loaded back, the model simplifies as {report['kind']!r} and keeps the skips "
            f"{report.get('kept_skips')}"
        )
    return report


def _replace(staged: Path, out: Path, scratch: Path) -> None:
    """Rename ``staged`` to ``out``; an existing ``out`` is moved into ``scratch`` first (and removed with it), or
    put back if the rename fails."""
    if not out.exists():
        os.rename(staged, out)
        return
    replaced = scratch / "replaced"
    os.rename(out, replaced)
    try:
        os.rename(staged, out)
    except OSError:
        os.rename(replaced, out)
        raise
