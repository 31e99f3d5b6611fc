"""``python -m app import torchvision|timm ARCH WEIGHTS --out DIR ...``: another library's ResNet into the store.

The manifest records the full command, every value spelled out (:func:`command_for`), so the import can be
repeated exactly.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pydantic import ValidationError

from app.cli_models import parse_shape
from app.importers.resnet import describe_validation_error, import_resnet
from app.importers.torchvision import ARCHS, SOURCES
from app.importers.weights import ImportRefused
from app.store import InputSpec

__all__ = ["add_parsers", "command_for", "parse_floats", "read_labels"]

_DESCRIPTION = (
    "Import a ResNet state_dict (torchvision's layout; timm's resnet18..152 use the same) into a foldserve "
    "checkpoint folder. Supported ARCH: " + ", ".join(ARCHS) + ". ResNeXt (resnext*) and wide ResNets "
    "(wide_resnet*) are refused: app.nets builds no grouped or widened bottlenecks. WEIGHTS is a .pth/.pt "
    "state_dict, read only with torch.load(weights_only=True), possibly wrapped under 'state_dict', 'model' or "
    "'model_state_dict' and with 'module.' prefixes, or a .safetensors file. Before anything is written, the "
    "imported network is checked against torchvision's own model in float64."
)


def parse_floats(text: str, flag: str) -> list[float]:
    """``0.485,0.456,0.406`` -> [0.485, 0.456, 0.406]."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, one per channel, got {text!r}") from None


def read_labels(path: Path) -> list[str]:
    """Class names, one per line (surrounding whitespace and blank lines ignored), which must be unique."""
    if not path.is_file():
        raise ValueError(f"--labels {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"--labels {path} is not UTF-8 text") from None
    labels = [line.strip() for line in lines if line.strip()]
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"--labels {path}: label {label!r} appears more than once; labels must be unique")
        seen.add(label)
    return labels


def _input_spec(args: argparse.Namespace) -> InputSpec:
    channels, height, width = parse_shape(args.input)
    try:
        return InputSpec(
            channels=channels,
            height=height,
            width=width,
            mean=parse_floats(args.mean, "--mean"),
            std=parse_floats(args.std, "--std"),
            resize=args.resize,
            crop=args.crop,
        )
    except ValidationError as exc:
        raise ValueError(f"invalid input options: {describe_validation_error(exc)}") from None


def command_for(args: argparse.Namespace, name: str) -> str:
    """The command line that repeats this import, every value spelled out."""
    parts = ["python", "-m", "app", "import", args.source, args.arch, str(args.weights), "--out", str(args.out)]
    parts += ["--name", name, "--version", args.version, "--labels", str(args.labels), "--input", args.input]
    parts += ["--mean", args.mean, "--std", args.std]
    if args.num_classes is not None:
        parts += ["--num-classes", str(args.num_classes)]
    if args.resize is not None:
        parts += ["--resize", str(args.resize)]
    if args.crop is not None:
        parts += ["--crop", args.crop]
    return shlex.join(parts)


def _import_command(args: argparse.Namespace) -> int:
    name = args.name if args.name is not None else args.out.name
    try:
        manifest = import_resnet(
            args.source,
            args.arch,
            args.weights,
            args.out,
            input=_input_spec(args),
            labels=read_labels(args.labels),
            name=name,
            version=args.version,
            num_classes=args.num_classes,
            command=command_for(args, name),
        )
    except ImportRefused as exc:
        raise ValueError(f"import refused: {exc}") from None
    check = manifest.training.extra["imported"]["check"] if manifest.training else {}
    print(
        f"imported {args.source} {args.arch} into {args.out}: {manifest.architecture.num_classes} classes, "
        f"max error against torchvision {check.get('max_rel_error', float('nan')):.2g} of the output scale"
    )
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``import`` command."""
    p = subparsers.add_parser(
        "import", help="import a torchvision (or timm) ResNet state_dict", description=_DESCRIPTION
    )
    p.add_argument("source", choices=SOURCES, help="whose layout the weights use")
    p.add_argument("arch", metavar="ARCH", help=f"one of {', '.join(ARCHS)} (timm: also with a .tag)")
    p.add_argument("weights", metavar="WEIGHTS", type=Path, help="a .pth/.pt state_dict or a .safetensors file")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to create, e.g. model_store/NAME")
    p.add_argument("--labels", type=Path, required=True, help="text file, one class name per line")
    p.add_argument("--input", required=True, help="input shape CxHxW, e.g. 3x224x224")
    p.add_argument("--mean", required=True, help="per-channel mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", required=True, help="per-channel std, e.g. 0.229,0.224,0.225")
    p.add_argument("--resize", type=int, help="resize the shorter side to this first (needs --crop), e.g. 256")
    p.add_argument("--crop", choices=("center",), help="crop HxW from the centre after --resize")
    p.add_argument("--num-classes", type=int, help="classes (default: from the weights' fc)")
    p.add_argument("--version", default="1", help="model version (default 1)")
    p.add_argument("--name", help="model name (default: the --out folder's name)")
    p.set_defaults(func=_import_command)
