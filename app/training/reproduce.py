"""``python -m app reproduce``: the paper's measurements, redone on the shipped models.

For every shipped model: test accuracy of the original and the simplified network, parameters, MACs,
and median latency against batch size for both (on the CPU at a fixed thread count, and on the GPU
when there is one), set beside the figures the paper reports. Plus the t0/schedule sweep of
:mod:`app.training.sweep`, whose results are kept in ``docs/img/sweep.json`` and rerun only with
``--sweep``. Writes ``docs/reproduction.md`` and its PNG figures under ``docs/img/``.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from app.benchmark import compare_forward
from app.simplify import fold_batchnorm, simplify
from app.store import load_checkpoint, read_manifest
from app.training.data import DataSpec, Digits, load_digits
from app.training.evaluate import data_spec_of, evaluate_model, test_set_of
from app.training.loop import resolve_device
from app.training.plots import plot_latency, plot_sweep, plot_training
from app.training.presets import SHIPPED
from app.training.record import load_history, load_samples
from app.training.report import render_report
from app.training.sweep import run_sweep

__all__ = ["CPU_BATCHES", "GPU_BATCHES", "measure_model", "reproduce"]

CPU_BATCHES = (1, 4, 16, 64)
GPU_BATCHES = (1, 16, 64, 256)


def _batch(images: torch.Tensor, size: int) -> torch.Tensor:
    repeats = -(-size // len(images))
    return images.repeat(repeats, 1, 1, 1)[:size].contiguous()


def _latency(
    variants: dict[str, torch.nn.Module],
    images: torch.Tensor,
    batches: tuple[int, ...],
    device: torch.device,
    threads: int,
) -> dict[str, dict[int, float]]:
    """Median seconds per call of every variant at every batch size, variants timed in interleaved rounds."""
    modules = {name: module.to(device).eval() for name, module in variants.items()}
    out: dict[str, dict[int, float]] = {name: {} for name in modules}
    for size in batches:
        timings = compare_forward(modules, _batch(images, size).to(device), threads=threads, rounds=9)
        print(
            f"  {device.type} batch {size}: "
            + ", ".join(f"{k} {v['median_s'] * 1e3:.3g} ms" for k, v in timings.items())
        )
        for name, timing in timings.items():
            out[name][size] = timing["median_s"]
    return out


def measure_model(model_dir: Path, data: Digits, *, latency_threads: int) -> dict[str, Any]:
    """Accuracy, cost and latency of one checkpoint and its simplification."""
    manifest, model = load_checkpoint(model_dir)
    samples, _ = load_samples(model_dir)
    simplified = simplify(model, manifest.input.shape, samples=samples)
    images, labels = test_set_of(manifest, data)
    result: dict[str, Any] = {
        "name": manifest.name,
        "architecture": manifest.architecture.model_dump(),
        "recorded_accuracy": manifest.training.test_accuracy if manifest.training else None,
        "training": manifest.training.model_dump() if manifest.training else None,
        **evaluate_model(model, simplified, images, labels, torch.device("cpu")),
        "simplification": simplified.report,
    }
    kind = simplified.report["kind"]
    variants: dict[str, torch.nn.Module] = {"original": model, f"simplified ({kind})": simplified.module}
    if kind == "skips-stripped":  # isolates what removing the skips saves, as the paper measures it
        variants = {"original": model, "batch norm folded, skips kept": fold_batchnorm(model), **variants}
        variants[f"simplified ({kind})"] = variants.pop(f"simplified ({kind})")
    result["latency"] = {"cpu": _latency(variants, images, CPU_BATCHES, torch.device("cpu"), latency_threads)}
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        result["latency"]["cuda"] = _latency(variants, images, GPU_BATCHES, torch.device("cuda"), latency_threads)
    return result


def _machine(latency_threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cores = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "load": load,
        "gpu": gpu,
        "threads": latency_threads,
        "torch": torch.__version__,
    }


def _sweep_rows(docs: Path, spec: DataSpec, *, rerun: bool, sweep: dict[str, int], device: str) -> list[dict[str, Any]]:
    path = docs / "img" / "sweep.json"
    if rerun:
        data = load_digits(replace(spec, limit=sweep["limit"]))
        rows = run_sweep(data, epochs=sweep["epochs"], width=sweep["width"], device=device)
        for row in rows:
            row["train_size"], row["test_size"] = len(data.train_labels), len(data.test_labels)
        path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        return rows
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    return rows if isinstance(rows, list) else []


def reproduce(
    *,
    store: Path = Path("model_store"),
    docs: Path = Path("docs"),
    sweep: bool = False,
    sweep_epochs: int = 8,
    sweep_width: int = 8,
    sweep_limit: int = 2500,
    device: str = "auto",
    latency_threads: int = 1,
) -> Path:
    """Measure the shipped models, (re)run the sweep if asked, and write ``docs/reproduction.md``.

    Raises:
        FileNotFoundError: when none of the shipped models is in ``store``.
    """
    dirs = [store / name for name in SHIPPED if (store / name / "manifest.json").is_file()]
    if not dirs:
        raise FileNotFoundError(f"none of the shipped models ({', '.join(SHIPPED)}) is in {store}")
    (docs / "img").mkdir(parents=True, exist_ok=True)
    loaded: dict[DataSpec, Digits] = {}
    results = []
    for directory in dirs:
        spec = data_spec_of(read_manifest(directory))
        data = loaded[spec] = loaded.get(spec) or load_digits(spec)
        print(f"measuring {directory.name}", flush=True)
        results.append(measure_model(directory, data, latency_threads=latency_threads))
    sweep_config = {"epochs": sweep_epochs, "width": sweep_width, "limit": sweep_limit}
    spec = data_spec_of(read_manifest(dirs[0]))
    rows = _sweep_rows(docs, spec, rerun=sweep, sweep=sweep_config, device=str(resolve_device(device)))
    plot_training({r["name"]: load_history(store / r["name"]) for r in results}, docs / "img" / "training.png")
    for where in results[0]["latency"]:
        title = (
            f"{where}, {latency_threads} thread(s)" if where == "cpu" else f"{where}: {torch.cuda.get_device_name()}"
        )
        plot_latency({r["name"]: r["latency"][where] for r in results}, docs / "img" / f"latency_{where}.png", title)
    if rows:
        plot_sweep(rows, docs / "img" / "sweep.png")
    machine = _machine(latency_threads)
    (docs / "img" / "reproduction.json").write_text(
        json.dumps({"machine": machine, "models": results}, indent=1, default=str) + "\n", encoding="utf-8"
    )
    path = docs / "reproduction.md"
    path.write_text(render_report(results, rows, machine), encoding="utf-8")
    return path
