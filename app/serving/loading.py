"""Loading one checkpoint into the two networks the service runs, one fixed pipeline.

read (manifest, then the memory budget: a model over ``max_model_bytes`` is refused before anything is
allocated) → build (strict load) → simplify → verify (float64, random inputs and sample images) → runtimes
(each variant on every candidate runtime: built, verified against the same float64 reference, timed; the
fastest that passed serves, with its largest useful batch) → warm up both variants → measure the speedup
(median batch-1 latency of the served variants, original over simplified). Each stage is timed. Everything
here blocks: the registry runs it in a worker thread.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from torch import nn

from app.benchmark import compare_forward
from app.budget import check_budget, largest_timed_batch
from app.config import Settings
from app.runtimes import (
    GraphCache,
    SelectionOptions,
    VariantRuntime,
    graph_key,
    select_runtime,
    served,
)
from app.serving.images import decode_image
from app.serving.resources import return_freed_memory
from app.simplify import Simplified, simplify
from app.store import MANIFEST_FILE, InputSpec, Manifest, ModelStore, load_checkpoint, read_manifest

__all__ = ["SAMPLES_FILE", "LoadedModel", "batch_sizes_to_warm", "load_model", "resolve_device"]

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.safetensors"
"""Optional file beside a checkpoint: ``images`` ``[N, C, H, W]``, normalised, verified on at load."""


@dataclass
class LoadedModel:
    """A checkpoint made ready to serve: both variants on their runtimes, and what loading measured."""

    manifest: Manifest
    runtimes: dict[str, VariantRuntime]  # "collapsed" and "original"
    report: dict[str, Any]
    samples: str  # where the verification images came from
    latency_s: dict[str, float]  # median batch-1 seconds per variant as served, measured at load
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """Median batch-1 latency of the original over the collapsed network."""
        return self.latency_s["original"] / self.latency_s["collapsed"]


def resolve_device(setting: str) -> torch.device:
    """The device that ``FOLDSERVE_DEVICE`` names; ``auto`` is CUDA when available, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("FOLDSERVE_DEVICE is 'cuda' but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(setting)


def batch_sizes_to_warm(max_batch_size: int, device: torch.device | str = "cuda") -> list[int]:
    """The batch shapes to warm up.

    On CUDA, every shape the batcher runs (it pads batches to powers of two below ``max_batch_size``, and
    itself), so that ``cudnn.benchmark`` tunes each before a client waits for it. On the CPU batches are not
    padded and kernels need no tuning: one image and two (the first pass of each code path); warming every
    shape there cost a ResNet-50 at 224x224 a minute of start-up and a batch of 32's activations in memory. A
    runtime that keeps something for each size it runs (OpenVINO) runs each of those sizes once more
    (``Runtime.sizes_to_prepare``).
    """
    if torch.device(device).type != "cuda":
        return sorted({1, min(2, max_batch_size)})
    sizes = [1 << i for i in range(max_batch_size.bit_length()) if 1 << i < max_batch_size]
    return [*sizes, max_batch_size]


class _Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - start


def load_model(directory: Path, settings: Settings, device: torch.device) -> LoadedModel:
    """Run the whole pipeline for the checkpoint in ``directory``.

    Raises:
        CheckpointError: the checkpoint cannot be read or built, lies outside the model store, or would need
            more memory than ``settings.max_model_bytes``.
        SimplificationError: the network cannot be simplified or misses the verification tolerance.
    """
    stages = _Stages()
    store = ModelStore(settings.model_store, allow_links_out=settings.allow_symlinks_out_of_store)
    with stages("read"):
        manifest = read_manifest(directory, store=store)
        shipped = _shipped_samples(directory, manifest.input, store)
        num_samples = shipped[1] if shipped else settings.verification_samples
        check_budget(
            manifest,
            settings,
            num_samples=num_samples,
            warmup_batch=max(batch_sizes_to_warm(settings.max_batch_size, device)),
            name=store.name(directory / MANIFEST_FILE),
        )
        samples, origin = _verification_samples(shipped, manifest.input, settings.verification_samples)
    with stages("build"):
        manifest, model = load_checkpoint(directory, store=store)
    with stages("simplify"):
        simplified = simplify(
            model,
            manifest.input.shape,
            samples=samples,
            max_affine_bytes=settings.max_affine_bytes,
            tolerance=settings.verification_tolerance,
        )
    report = simplified.report
    # simplify() verifies as its last step; split its time so the two stages are told apart
    stages.seconds["verify"] = report["seconds"] - report["transform_seconds"]
    stages.seconds["simplify"] -= stages.seconds["verify"]
    with stages("runtimes"):
        runtimes = _select_runtimes(manifest, simplified, model, settings, device)
    del model, simplified  # what serves is in the runtimes now (an eager one holds its module)
    example = samples[:1] if samples is not None else torch.zeros(1, *manifest.input.shape)
    with stages("warmup"):
        _warm_up_decoder(manifest.input, settings.max_image_pixels)
        for chosen in runtimes.values():
            _warm_up(chosen, example, settings.warmup_runs)
    with stages("speedup"):
        timings = compare_forward(
            {name: served(chosen.runtime) for name, chosen in runtimes.items()},
            example,
            warmup=1,
            rounds=settings.speedup_rounds,
            block_seconds=settings.speedup_block_seconds,
        )
    latency = {name: float(timing["median_s"]) for name, timing in timings.items()}
    return_freed_memory()
    return LoadedModel(manifest, runtimes, report, origin, latency, stages.seconds)


def _select_runtimes(
    manifest: Manifest, simplified: Simplified, original: nn.Module, settings: Settings, device: torch.device
) -> dict[str, VariantRuntime]:
    """Each variant on the fastest candidate runtime that passes verification against the original in float64.

    Raises:
        NoRuntimePassed: a variant has no runtime that passed.
    """
    assert simplified.inputs is not None and simplified.reference is not None
    options = SelectionOptions(
        candidates=settings.runtime_candidates,
        device=device,
        threads=torch.get_num_threads(),
        tolerance=settings.verification_tolerance,
        # the batcher's cap, or less where a batch that large would need more memory than one timing may take
        max_batch_size=largest_timed_batch(
            manifest.architecture.to_config(), manifest.input.shape, settings.max_batch_size
        ),
        measure_batch=settings.batch_size == "measured",
        rounds=settings.speedup_rounds,
        block_seconds=settings.speedup_block_seconds,
        cache=GraphCache(settings.runtime_cache) if settings.runtime_cache is not None else None,
    )
    modules = {"collapsed": simplified.module, "original": original}
    chosen = {}
    for variant, module in modules.items():
        chosen[variant] = select_runtime(
            module,
            manifest.input.shape,
            simplified.inputs,
            simplified.reference,
            options,
            cache_key=graph_key(
                weights_sha256=manifest.weights.sha256,
                variant=variant,
                kind=simplified.report["kind"],
                input_shape=manifest.input.shape,
            ),
        )
        logger.info("%s %s: %s", manifest.name, variant, _summary(chosen[variant]))
    return chosen


def _summary(chosen: VariantRuntime) -> str:
    """One log line: the runtime served, its batch, and each candidate's batch-1 time or why it is not served."""
    parts = []
    for name, report in chosen.candidates.items():
        one = report.latency_s.get(1)
        parts.append(f"{name} {one * 1e3:.3f} ms" if one is not None else f"{name} {report.status}: {report.reason}")
    return f"serves on {chosen.name} (batches up to {chosen.max_batch_size}); batch 1: {', '.join(parts)}"


def _shipped_samples(directory: Path, spec: InputSpec, store: ModelStore) -> tuple[Path, int] | None:
    """The real path of the samples shipped beside the checkpoint and how many images it holds, from its header
    alone; None when there is none, or none that fits ``spec`` (a warning says why).

    Raises:
        CheckpointError: when the samples file is a link to outside the model store.
    """
    path = directory / SAMPLES_FILE
    real = store.resolve(path)
    if not real.is_file():
        return None
    try:
        with safe_open(str(real), framework="pt") as f:
            shape = tuple(f.get_slice("images").get_shape())
    except (SafetensorError, OSError) as exc:
        logger.warning("%s: ignoring unreadable samples (%s)", path, exc)
        return None
    if len(shape) != 4 or shape[1:] != spec.shape or not shape[0]:
        logger.warning("%s: ignoring samples of shape %s, expected [N, %s]", path, shape, spec.shape)
        return None
    return real, shape[0]


def _verification_samples(
    shipped: tuple[Path, int] | None, spec: InputSpec, count: int
) -> tuple[torch.Tensor | None, str]:
    """Real images shipped beside the checkpoint if any, else random images in the pixel range."""
    if shipped is not None:
        try:
            with safe_open(str(shipped[0]), framework="pt") as f:
                images = f.get_tensor("images").float()
        except (SafetensorError, OSError) as exc:
            logger.warning("%s: ignoring unreadable samples (%s)", shipped[0], exc)
        else:
            return images, f"{len(images)} images shipped in {SAMPLES_FILE}"
    if count == 0:
        return None, "random inputs only"
    # Uniform pixels in [0, 1] pushed through the manifest's normalisation: the range real images occupy.
    pixels = torch.rand(count, *spec.shape, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (pixels - mean) / std, f"{count} random pixel-range images"


@torch.inference_mode()
def _warm_up(chosen: VariantRuntime, example: torch.Tensor, runs: int) -> None:
    call = served(chosen.runtime)
    warm = batch_sizes_to_warm(chosen.max_batch_size, chosen.runtime.device)
    for size in sorted({*warm, *chosen.runtime.sizes_to_prepare(chosen.max_batch_size)}):
        batch = example.expand(size, *example.shape[1:]).contiguous()
        for _ in range(runs if size in warm else min(runs, 1)):
            call(batch)


def _warm_up_decoder(spec: InputSpec, max_pixels: int) -> None:
    """Decode one blank PNG: the first decode in a process pays for Pillow's lazy plugin loading (150 ms
    measured), which belongs to start-up, not to the first client's request."""
    buffer = io.BytesIO()
    Image.new("L", (spec.width, spec.height)).save(buffer, format="PNG")
    decode_image(buffer.getvalue(), spec, max_pixels=max_pixels)
