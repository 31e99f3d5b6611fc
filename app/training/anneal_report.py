"""``anneal --report DIR``: what annealing a model kept and what it saved, in markdown and one plot.

Accuracy of the source and of the result on the same validation split, and parameters, MACs and median forward
time (after warm-up, interleaved rounds: :func:`app.benchmark.compare_forward`) of the source, the annealed network
and the stripped one that foldserve serves, beside the source as foldserve serves it (batch norm folded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.benchmark import compare_forward
from app.simplify import count_cost, fold_batchnorm, simplify
from app.training.anneal import Annealed
from app.training.folders import LabelledImages
from app.training.loop import accuracy
from app.training.plots import plot_anneal

__all__ = ["REPORT_FILE", "TIMED_BATCHES", "measure", "write_report"]

REPORT_FILE = "anneal.md"
TIMED_BATCHES = (1, 16)


def measure(annealed: Annealed, data: LabelledImages, *, threads: int) -> dict[str, Any]:
    """Accuracy on the validation split, cost and CPU forward time of each network, as one JSON-ready dict."""
    shape = annealed.source.input.shape
    model = annealed.result.model
    stripped = simplify(model, shape, samples=data.test_images[:16])
    networks = {
        "source": annealed.source_model,
        "source, batch norm folded (as served)": fold_batchnorm(annealed.source_model),
        "annealed": model,
        "stripped (as served)": stripped.module,
    }
    rows: dict[str, dict[str, Any]] = {}
    for name, network in networks.items():
        _, acc, _ = accuracy(network, data.test_images, data.test_labels)
        rows[name] = {"accuracy": acc, **count_cost(network, shape), "median_ms": {}}
    for size in TIMED_BATCHES:
        x = data.test_images[:size].repeat(-(-size // len(data.test_images)), 1, 1, 1)[:size].contiguous()
        for name, timing in compare_forward(networks, x, threads=threads, rounds=9).items():
            rows[name]["median_ms"][size] = timing["median_s"] * 1e3
    return {
        "source": annealed.source.name,
        "val_size": len(data.test_labels),
        "split": data.split,
        "threads": threads,
        "networks": rows,
        "verification": {k: stripped.report[k] for k in ("max_abs_error", "max_rel_error", "top1_agreement")},
        "history": annealed.result.history,
        "schedule": annealed.config.schedule.describe(annealed.config.epochs) if annealed.config.schedule else "",
    }


def render(measured: dict[str, Any]) -> str:
    """The markdown report of :func:`measure`'s numbers."""
    batches = TIMED_BATCHES
    lines = [
        f"# Annealing {measured['source']}",
        "",
        f"Skip weights {measured['schedule']}. Validation: {measured['val_size']} images ({measured['split']}). "
        f"Forward time: median ms per call on the CPU at {measured['threads']} thread(s), float32, after warm-up, "
        "the networks timed in interleaved rounds.",
        "",
        "| network | validation accuracy | parameters | MACs per image | "
        + " | ".join(f"ms, batch {b}" for b in batches)
        + " |",
        "|---|---|---|---|" + "---|" * len(batches),
    ]
    for name, row in measured["networks"].items():
        times = " | ".join(f"{row['median_ms'][b]:.3g}" for b in batches)
        lines.append(f"| {name} | {100 * row['accuracy']:.2f}% | {row['parameters']:,} | {row['macs']:,} | {times} |")
    v = measured["verification"]
    lines += [
        "",
        f"Stripped against annealed, float64: max error {v['max_rel_error']:.2g} of the output scale "
        f"(max absolute {v['max_abs_error']:.2g}), top-1 agreement {v['top1_agreement']:.3f}.",
        "",
        "![validation accuracy and skip weight over the fine-tuning](anneal.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(directory: Path, annealed: Annealed, data: LabelledImages, *, threads: int) -> Path:
    """Write ``anneal.md``, ``anneal.png`` and ``anneal.json`` into ``directory``; returns the markdown's path."""
    directory.mkdir(parents=True, exist_ok=True)
    measured = measure(annealed, data, threads=threads)
    before = measured["networks"]["source"]["accuracy"]
    plot_anneal(annealed.result.history, before, directory / "anneal.png", f"annealing {measured['source']}")
    (directory / "anneal.json").write_text(json.dumps(measured, indent=1) + "\n", encoding="utf-8")
    path = directory / REPORT_FILE
    path.write_text(render(measured), encoding="utf-8")
    return path
