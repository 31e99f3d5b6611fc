"""``python -m app train | anneal | evaluate | reproduce``: the training package's commands.

``train`` starts from a preset (``--preset``) and lets any flag override it; the manifest of the model
it writes records the full command, every value spelled out, so the run can be repeated even if the
preset changes later (:func:`command_for` writes it, :func:`config_from_args` reads it back).
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import replace
from pathlib import Path

import torch

from app.training.anneal_cli import add_anneal_parser
from app.training.data import DataSpec, load_digits
from app.training.loop import TrainConfig, train
from app.training.presets import PRESETS, get_preset
from app.training.record import save_run
from app.training.schedules import SCHEDULE_KINDS, SkipSchedule

__all__ = ["add_parsers", "command_for", "config_from_args"]


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder with torchvision's MNIST (or where --download puts it)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST into --data-dir")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a ResNet on MNIST and write a checkpoint")
    p.add_argument("--preset", default="resnet18-mnist", choices=sorted(PRESETS), help="recipe to start from")
    p.add_argument("--name", help="model name (default: the preset's)")
    p.add_argument("--out", help="checkpoint folder (default: model_store/NAME)")
    p.add_argument("--depth", type=int, choices=(18, 34, 50))
    p.add_argument("--width", type=int)
    p.add_argument("--activation", choices=("relu", "identity"))
    p.add_argument("--skips", choices=("standard", "annealed", "none"), help="none: a plain CNN")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=("sgd", "adamw"))
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast on CUDA")
    p.add_argument("--schedule", choices=SCHEDULE_KINDS, help="shape of the skip-weight fall (annealed skips)")
    p.add_argument("--t0", type=float, help="when the skip weight reaches 0")
    p.add_argument("--t0-unit", choices=("fraction", "epochs"), help="unit of --t0")
    p.add_argument("--seed", type=int)
    p.add_argument("--source", choices=("auto", "torchvision", "sample"), default="auto", help="where digits come from")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of the 5,000-digit sample")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--limit", type=int, help="use only this many digits (quick runs)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    _add_data_flags(p)
    p.set_defaults(func=_train)


def config_from_args(args: argparse.Namespace) -> tuple[str, TrainConfig, DataSpec]:
    """The model name, training recipe and data spec that the ``train`` flags describe."""
    base = get_preset(args.preset)
    arch_changes = {k: getattr(args, k) for k in ("depth", "width", "activation", "skips") if getattr(args, k)}
    if "depth" in arch_changes:
        arch_changes["block"] = None  # the depth's own block kind
    arch = replace(base.architecture, **arch_changes)
    schedule = base.schedule or SkipSchedule()
    sched_changes = {"kind": args.schedule, "t0": args.t0, "unit": args.t0_unit}
    schedule = replace(schedule, **{k: v for k, v in sched_changes.items() if v is not None})
    names = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "augment", "amp", "seed")
    changes = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    config = replace(base, architecture=arch, schedule=schedule if arch.skips == "annealed" else None, **changes)
    spec = DataSpec(
        source=args.source,
        data_dir=args.data_dir,
        download=args.download,
        test_fraction=args.test_fraction,
        seed=args.data_seed,
        limit=args.limit,
    )
    return args.name or args.preset, config, spec


def command_for(preset: str, name: str, config: TrainConfig, spec: DataSpec, out: str) -> str:
    """The ``python -m app train`` command line that reproduces ``config`` on ``spec``, every value explicit."""
    a = config.architecture
    parts = ["python", "-m", "app", "train", "--preset", preset, "--name", name, "--out", out]
    parts += ["--depth", str(a.depth), "--width", str(a.width), "--activation", a.activation, "--skips", a.skips]
    parts += ["--epochs", str(config.epochs), "--batch-size", str(config.batch_size), "--optimizer", config.optimizer]
    parts += ["--lr", repr(config.lr), "--weight-decay", repr(config.weight_decay), "--seed", str(config.seed)]
    parts += ["--augment" if config.augment else "--no-augment", "--amp" if config.amp else "--no-amp"]
    if config.schedule is not None:
        s = config.schedule
        parts += ["--schedule", s.kind, "--t0", repr(s.t0), "--t0-unit", s.unit]
    parts += ["--source", spec.source, "--test-fraction", repr(spec.test_fraction), "--data-seed", str(spec.seed)]
    if spec.limit is not None:
        parts += ["--limit", str(spec.limit)]
    if spec.data_dir is not None:
        parts += ["--data-dir", spec.data_dir]
    if spec.download:
        parts += ["--download"]
    return shlex.join(parts)


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def _train(args: argparse.Namespace) -> int:
    _set_threads(args)
    name, config, spec = config_from_args(args)
    out = args.out or f"model_store/{name}"
    data = load_digits(spec)
    command = command_for(args.preset, name, config, spec, out)
    print(f"training {name}: {len(data.train_labels)} train / {len(data.test_labels)} test digits ({data.dataset})")
    result = train(config, data, device=args.device, progress=args.progress)
    manifest = save_run(out, name, config, data, result, command)
    print(
        f"wrote {out}: test accuracy {result.test_accuracy:.4f}, {result.seconds:.1f} s on {result.device}, "
        f"sha256 {manifest.weights.sha256[:12]}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from app.training.evaluate import evaluate_checkpoint

    _set_threads(args)
    report = evaluate_checkpoint(args.model_dir, data_dir=args.data_dir, download=args.download, device=args.device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['name']}: {report['test_size']} test digits; "
            f"accuracy original {report['accuracy_original']:.4f}, "
            f"simplified ({report['simplification']['kind']}) {report['accuracy_simplified']:.4f}, "
            f"agreement {report['agreement']:.4f}, max |logit difference| {report['max_abs_logit_difference']:.3g}"
        )
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from app.training.reproduce import reproduce

    _set_threads(args)
    path = reproduce(
        store=Path(args.store),
        docs=Path(args.docs),
        sweep=args.sweep,
        sweep_epochs=args.sweep_epochs,
        sweep_width=args.sweep_width,
        sweep_limit=args.sweep_limit,
        device=args.device,
        latency_threads=args.latency_threads,
    )
    print(f"wrote {path}")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``, ``anneal``, ``evaluate`` and ``reproduce``."""
    _add_train_parser(subparsers)
    add_anneal_parser(subparsers)
    p = subparsers.add_parser("evaluate", help="test accuracy of a checkpoint and of its simplified network")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint folder (manifest.json + weights)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    _add_data_flags(p)
    p.set_defaults(func=_evaluate)
    p = subparsers.add_parser("reproduce", help="write docs/reproduction.md and its plots from the shipped models")
    p.add_argument("--store", default="model_store", help="model store holding the shipped models")
    p.add_argument("--docs", default="docs", help="where reproduction.md and img/ go")
    p.add_argument("--sweep", action="store_true", help="(re)run the t0/schedule sweep (else reuse its saved results)")
    p.add_argument("--sweep-epochs", type=int, default=8, help="epochs per sweep run")
    p.add_argument("--sweep-width", type=int, default=8, help="network width of the sweep runs")
    p.add_argument("--sweep-limit", type=int, default=2500, help="digits used by the sweep (train + test)")
    p.add_argument("--latency-threads", type=int, default=1, help="CPU threads for the latency measurements")
    _add_data_flags(p)
    p.set_defaults(func=_reproduce)
