"""``python -m app runtimes MODEL_DIR``: every candidate runtime of both variants, timed side by side.

It loads the model through the service's own pipeline (``FOLDSERVE_*`` settings, so the choice printed is the
one the service makes), builds every candidate again, and times them all in interleaved rounds at the batch sizes
asked for, longer than loading does. Each row gives the median time per call and per image and the ratio to the
fastest candidate at that batch size; the summary checks the served runtime against the fastest and against eager.
``--gil`` also measures how much of its speed a Python thread keeps while each runtime runs in another thread
(what the event loop keeps while the batcher's thread runs a forward pass).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import torch

from app.benchmark import compare_forward
from app.config import get_settings
from app.runtimes.cache import GraphCache, graph_key
from app.runtimes.select import SelectionOptions, build_candidates, part_for, served
from app.serving.loading import load_model
from app.simplify import simplify
from app.store import load_checkpoint

__all__ = ["add_parsers"]

GIL_SECONDS = 1.0
"""How long each GIL measurement counts."""


def _command(args: argparse.Namespace) -> int:
    directory = Path(args.model_dir)
    settings = get_settings().model_copy(update={"model_store": directory.parent})
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    loaded = load_model(directory, settings, device)
    choice = {variant: (chosen.parts, chosen.max_batch_size) for variant, chosen in loaded.runtimes.items()}
    for chosen in loaded.runtimes.values():
        chosen.runtime.close()
    manifest, model = load_checkpoint(directory)
    simplified = simplify(model, manifest.input.shape, tolerance=settings.verification_tolerance)
    assert simplified.inputs is not None and simplified.reference is not None
    options = SelectionOptions(
        candidates=settings.runtime_candidates,
        device=device,
        threads=args.threads,
        tolerance=settings.verification_tolerance,
        max_batch_size=settings.max_batch_size,
        cache=GraphCache(settings.runtime_cache) if settings.runtime_cache is not None else None,
    )
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    result: dict[str, Any] = {"model": manifest.name, "threads": args.threads, "rounds": args.rounds, "variants": {}}
    for variant, module in (("collapsed", simplified.module), ("original", model)):
        key = graph_key(
            weights_sha256=manifest.weights.sha256,
            variant=variant,
            kind=simplified.report["kind"],
            input_shape=manifest.input.shape,
        )
        reports, built = build_candidates(
            module, manifest.input.shape, simplified.inputs, simplified.reference, options, cache_key=key
        )
        example = simplified.inputs[:1].float()
        rows = _time_all(built, example, sizes, args.rounds)
        result["variants"][variant] = {
            "served": choice[variant][0],  # runtime -> the smallest batch it takes
            "max_batch_size": choice[variant][1],
            "rows": rows,
            "not_built": {n: r.reason for n, r in reports.items() if n not in built},
            "gil": _gil(built, example) if args.gil else None,
        }
        for runtime in built.values():
            runtime.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


def _time_all(built: dict[str, Any], example: torch.Tensor, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        batch = example.expand(size, *example.shape[1:]).contiguous()
        timings = compare_forward({n: served(r) for n, r in built.items()}, batch, rounds=rounds, block_seconds=0.05)
        fastest = min(t["median_s"] for t in timings.values())
        for name, timing in timings.items():
            rows.append(
                {
                    "runtime": name,
                    "batch_size": size,
                    "median_ms": timing["median_s"] * 1e3,
                    "images_per_s": size / timing["median_s"],
                    "vs_fastest": timing["median_s"] / fastest,
                }
            )
    return rows


def _gil(built: dict[str, Any], example: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per runtime, what each side keeps of its speed when a runtime's thread and a pure-Python thread (standing for
    the event loop, which needs the GIL for every step) run at once, against each alone: ``runtime`` (its calls/s)
    and ``python`` (the loop's iterations/s). A runtime that holds the GIL while it computes takes it from the other."""
    shares = {}
    for name, runtime in built.items():
        python_alone = _spin(GIL_SECONDS)
        runtime_alone = _calls_for(runtime, example, GIL_SECONDS)
        calls: list[float] = []
        worker = threading.Thread(target=lambda r=runtime, c=calls: c.append(_calls_for(r, example, GIL_SECONDS)))
        worker.start()
        python_beside = _spin(GIL_SECONDS)
        worker.join()
        shares[name] = {"runtime": calls[0] / runtime_alone, "python": python_beside / python_alone}
    return shares


def _calls_for(runtime: Any, example: torch.Tensor, seconds: float) -> float:
    """Calls per second of ``runtime(example)`` for ``seconds``."""
    count, started = 0, time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - started < seconds:
            runtime(example)
            count += 1
    return count / (time.perf_counter() - started)


def _spin(seconds: float) -> float:
    """Iterations per second of a pure-Python loop."""
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        count += 1
    return count / (time.perf_counter() - started)


def _print(result: dict[str, Any]) -> None:
    print(f"{result['model']}: {result['threads']} threads, medians of {result['rounds']} interleaved rounds")
    print(f"{'variant':>10} {'batch':>5} {'runtime':>12} {'median ms':>10} {'images/s':>10} {'/fastest':>8}")
    for variant, data in result["variants"].items():
        for row in data["rows"]:
            mark = " <- served" if row["runtime"] == part_for(data["served"], row["batch_size"]) else ""
            print(
                f"{variant:>10} {row['batch_size']:>5} {row['runtime']:>12} {row['median_ms']:>10.4f} "
                f"{row['images_per_s']:>10.0f} {row['vs_fastest']:>8.3f}{mark}"
            )
        for name, reason in data["not_built"].items():
            print(f"{variant:>10} {name}: not built ({reason})")
        served_rows = {
            r["batch_size"]: r for r in data["rows"] if r["runtime"] == part_for(data["served"], r["batch_size"])
        }
        eager = {r["batch_size"]: r for r in data["rows"] if r["runtime"] == "eager"}
        for size, row in served_rows.items():
            versus_eager = f", {eager[size]['median_ms'] / row['median_ms']:.2f}x eager" if size in eager else ""
            print(
                f"  {variant} batch {size} served on {row['runtime']}: {row['vs_fastest']:.3f}x the fastest"
                f"{versus_eager}"
            )
        starts = ", ".join(f"{name} from {start}" for name, start in data["served"].items())
        print(f"  {variant} batches up to {data['max_batch_size']}: {starts}")
        for name, share in (data["gil"] or {}).items():
            print(
                f"  {variant} {name} in a thread beside a Python loop: it keeps {share['runtime']:.2f} of its calls/s, "
                f"the loop {share['python']:.2f} of its speed"
            )


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``runtimes``."""
    p = subparsers.add_parser("runtimes", help="time every candidate runtime of a model's two variants side by side")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a checkpoint folder")
    p.add_argument("--batch-sizes", default="1,16", help="comma-separated batch sizes (default 1,16)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of every runtime (default 1)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per batch size")
    p.add_argument("--gil", action="store_true", help="also measure what a Python thread keeps beside each runtime")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_command)
