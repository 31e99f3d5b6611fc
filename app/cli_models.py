"""The ``simplify`` and ``bench`` commands: simplify a model and time it against the original."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

import torch
from torch import nn

from app.benchmark import compare_forward
from app.nets import ResNetConfig, build_resnet, set_skip_weight
from app.simplify import DEFAULT_TOLERANCE, fold_batchnorm, simplify
from app.store import load_checkpoint

__all__ = ["add_parsers", "parse_config", "parse_shape"]


def parse_config(text: str) -> ResNetConfig:
    """``depth=34,width=64,activation=identity`` -> ResNetConfig (unnamed fields keep their defaults)."""
    types = {f.name: (int if f.type in ("int", int) else str) for f in dataclasses.fields(ResNetConfig)}
    values: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ValueError(f"--config takes key=value pairs with keys {sorted(types)}, got {item!r}")
        values[key] = types[key](value.strip())
    return ResNetConfig(**values)


def parse_shape(text: str) -> tuple[int, int, int]:
    """``1x28x28`` -> (1, 28, 28)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--input takes CxHxW with positive integers, e.g. 1x28x28, got {text!r}")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def _load(args: argparse.Namespace) -> tuple[str, nn.Module, tuple[int, int, int]]:
    """The model named on the command line: a checkpoint folder, or a random one built from --config."""
    if args.config is not None:
        config = parse_config(args.config)
        torch.manual_seed(args.seed)
        model = build_resnet(config).eval()
        if config.skips == "annealed":
            set_skip_weight(model, args.skip_weight)
        shape = parse_shape(args.input) if args.input else (config.in_channels, 28, 28)
        return f"random {args.config}", model, shape
    if args.model_dir is None:
        raise ValueError("name a MODEL_DIR or give --config")
    manifest, model = load_checkpoint(args.model_dir)
    return manifest.name, model, manifest.input.shape


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", nargs="?", metavar="MODEL_DIR", help="a checkpoint folder in a model store")
    parser.add_argument("--config", help="build a random model instead, e.g. depth=34,width=64,activation=identity")
    parser.add_argument("--input", help="input shape CxHxW for --config (default: in_channels x 28 x 28)")
    parser.add_argument("--skip-weight", type=float, default=0.0, help="skip weight of a random annealed model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _simplify_command(args: argparse.Namespace) -> int:
    name, model, shape = _load(args)
    report = simplify(model, shape, tolerance=args.tolerance).report
    if args.json:
        print(json.dumps({"model": name, "input_shape": shape, **report}, indent=2))
    else:
        print(f"{name}: {report['kind']}, input {'x'.join(map(str, shape))}")
        for key, value in report.items():
            if key != "kind":
                print(f"  {key:20s} {value:.4g}" if isinstance(value, float) else f"  {key:20s} {value}")
    return 0


def _bench_rows(
    variants: dict[str, nn.Module],
    shape: tuple[int, int, int],
    batch_sizes: list[int],
    threads: int,
    rounds: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    rows = []
    for batch in batch_sizes:
        x = torch.randn(batch, *shape, device=device)
        for variant, stats in compare_forward(variants, x, threads=threads, rounds=rounds).items():
            rows.append({"variant": variant, **stats, "per_image_s": stats["median_s"] / batch})
    return rows


def _bench_command(args: argparse.Namespace) -> int:
    name, model, shape = _load(args)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = model.to(device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"--batch-sizes takes positive integers, got {args.batch_sizes!r}")
    simplified = simplify(model, shape)
    variants: dict[str, nn.Module] = {"original": model, "simplified": simplified.module}
    config = getattr(model, "config", None)
    if args.plain and config is not None and config.skips == "annealed":
        # the same network built without skips in the first place, batch norm folded like the simplified one
        plain = build_resnet(dataclasses.replace(config, skips="none")).eval()
        variants["plain-folded"] = fold_batchnorm(plain).to(device)
    rows = _bench_rows(variants, shape, batch_sizes, args.threads, args.rounds, device)
    by_key = {(r["variant"], r["batch_size"]): r["median_s"] for r in rows}
    ratios = {b: by_key[("original", b)] / by_key[("simplified", b)] for b in batch_sizes}
    result = {
        "model": name,
        "input_shape": shape,
        "threads": args.threads,
        "device": str(device),
        "kind": simplified.report["kind"],
        "simplify_seconds": simplified.report["seconds"],
        "report": simplified.report,
        "rows": rows,
        "speedup": ratios,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{name}: {simplified.report['kind']}, input {'x'.join(map(str, shape))}, on {device}, {args.threads} threads"
    )
    report = simplified.report
    print(
        f"simplified in {report['transform_seconds']:.2f} s, verified in "
        f"{report['seconds'] - report['transform_seconds']:.2f} s (max rel error {report['max_rel_error']:.2g})"
    )
    print(f"{'batch':>6} {'variant':>13} {'median':>12} {'p10':>12} {'p90':>12} {'rounds':>6} {'calls':>7}")
    for r in rows:
        print(
            f"{r['batch_size']:>6} {r['variant']:>13} {_ms(r['median_s'])} {_ms(r['p10_s'])} {_ms(r['p90_s'])} "
            f"{r['runs']:>6} {r['calls']:>7}"
        )
    for b, ratio in ratios.items():
        extra = ""
        if ("plain-folded", b) in by_key:
            extra = f", simplified / plain-folded = {by_key[('simplified', b)] / by_key[('plain-folded', b)]:.3f}"
        print(f"batch {b}: original / simplified = {ratio:.1f}x ({100 * (1 - 1 / ratio):.1f}% less time){extra}")
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:>9.4f} ms" if math.isfinite(seconds) else f"{'-':>12}"


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``simplify`` and ``bench``."""
    p = subparsers.add_parser("simplify", help="simplify a model and print the verification report")
    _add_model_args(p)
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max error relative to output scale")
    p.set_defaults(func=_simplify_command)

    p = subparsers.add_parser("bench", help="time the original and the simplified model")
    _add_model_args(p)
    p.add_argument("--batch-sizes", default="1,64", help="comma-separated batch sizes (default 1,64)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads")
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per batch size (median over them)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where to time (default cpu)")
    p.add_argument("--plain", action="store_true", help="annealed models: also time a network built without skips")
    p.set_defaults(func=_bench_command)
