"""The memory budget: a model is sized from its manifest and refused before anything is allocated when it would
not fit, and the estimate bounds the peak that a real load measures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.budget import EXPORTER_BYTES, RUNTIME_BYTES, LoadEstimate, estimate_load_bytes, format_bytes
from app.config import Settings
from app.nets import ResNetConfig, resnet
from app.serving.loading import batch_sizes_to_warm, load_model
from app.store import CheckpointError, read_manifest
from tests.serving.conftest import SIZE, fast_settings, write_checkpoint

CPU = torch.device("cpu")
ISSUE_10 = {"depth": 50, "block": "bottleneck", "width": 1024, "in_channels": 3, "num_classes": 100_000}


def huge_folder(root: Path, side: int) -> Path:
    """The manifest of issue 10 (9.3 G parameters, 100,000 classes) at ``3 x side x side``; no weights file."""
    folder = root / "huge"
    folder.mkdir(parents=True)
    manifest = {
        "format": "foldserve/1",
        "name": "huge",
        "version": "1",
        "architecture": {**ISSUE_10, "stem": "imagenet", "activation": "relu", "skips": "standard"},
        "input": {"channels": 3, "height": side, "width": side, "mean": [0.5] * 3, "std": [0.25] * 3},
        "labels": [str(i) for i in range(100_000)],
        "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def memory_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak since the last reset) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/self/status")


def estimate_of(folder: Path, settings: Settings, num_samples: int) -> LoadEstimate:
    manifest = read_manifest(folder)
    return estimate_load_bytes(
        manifest.architecture.to_config(),
        manifest.input.shape,
        num_samples=num_samples,
        warmup_batch=max(batch_sizes_to_warm(settings.max_batch_size, CPU)),
        max_affine_bytes=settings.max_affine_bytes,
        runtimes=settings.runtime_candidates,
        max_batch_size=settings.max_batch_size,
    )


def test_the_manifest_of_issue_10_is_refused_by_its_schema(tmp_path: Path) -> None:
    folder = huge_folder(tmp_path, 4096)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_model(folder, fast_settings(tmp_path), CPU)
    assert time.perf_counter() - start < 1.0
    assert str(info.value) == (
        "huge/manifest.json: invalid manifest: input: Value error, input is 3x4096x4096 = 50331648 values per "
        "image, more than 4194304 (4x1024x1024)"
    )


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure memory")
def test_9_billion_parameters_are_refused_in_well_under_a_second_without_allocating(tmp_path: Path) -> None:
    folder = huge_folder(tmp_path, 1024)  # the largest input the schema allows
    settings = fast_settings(tmp_path)
    Path("/proc/self/clear_refs").write_text("5")  # restart VmHWM from the current resident size
    before = memory_kib("VmRSS")
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_model(folder, settings, CPU)
    seconds = time.perf_counter() - start
    message = str(info.value)
    del info  # its traceback holds the parsed manifest, 100,000 labels
    peak, after = memory_kib("VmHWM") - before, memory_kib("VmRSS") - before
    estimate = estimate_of(folder, settings, settings.verification_samples)
    assert estimate.network > 9_279_949_472 * 4  # float32 parameters, statistics and counters besides
    assert message == (
        f"huge/manifest.json: loading this model needs about {format_bytes(estimate.total)} ({estimate.describe()}), "
        f"more than FOLDSERVE_MAX_MODEL_BYTES=4294967296 (4.0 GiB); refused before building anything"
    )
    assert seconds < 0.5, f"refused in {seconds:.3f} s"
    # reading a 0.8 MB manifest of 100,000 labels is all it costs, against 7 GB before the budget
    assert peak < 64 * 1024, f"peak grew by {peak} KiB"
    assert after < 6 * 1024, f"resident memory grew by {after} KiB"


def test_a_model_loads_at_its_estimate_and_is_refused_one_byte_below(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path, "annealed", kind="annealed")
    settings = fast_settings(tmp_path)
    estimate = estimate_of(folder, settings, settings.verification_samples)
    # torch's and the ONNX runtimes' one-time costs, and a few MB for the load
    assert RUNTIME_BYTES + EXPORTER_BYTES < estimate.total < RUNTIME_BYTES + EXPORTER_BYTES + 16 * 2**20
    with pytest.raises(CheckpointError) as info:
        load_model(folder, fast_settings(tmp_path, max_model_bytes=estimate.total - 1), CPU)
    assert str(info.value) == (
        f"annealed/manifest.json: loading this model needs about {format_bytes(estimate.total)} "
        f"({estimate.describe()}), more than FOLDSERVE_MAX_MODEL_BYTES={estimate.total - 1} "
        f"({format_bytes(estimate.total - 1)}); refused before building anything"
    )
    loaded = load_model(folder, fast_settings(tmp_path, max_model_bytes=estimate.total), CPU)
    assert loaded.report["kind"] == "skips-stripped"


def test_shipped_samples_are_counted_from_their_header(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path, "annealed", kind="annealed")
    settings = fast_settings(tmp_path)
    fits_random = estimate_of(folder, settings, settings.verification_samples).total
    save_file({"images": torch.zeros(4096, 1, SIZE, SIZE)}, str(folder / "samples.safetensors"))
    assert estimate_of(folder, settings, 4096).total > fits_random
    with pytest.raises(CheckpointError, match=r"samples 2\.2 MiB"):
        load_model(folder, fast_settings(tmp_path, max_model_bytes=fits_random), CPU)


def test_the_default_budget_fits_an_imagenet_resnet_152(monkeypatch: pytest.MonkeyPatch) -> None:
    # 152 is not built here (yet): the footprint reads the stage layout from the same table as ResNet
    monkeypatch.setitem(resnet.DEPTHS, 152, ("bottleneck", (3, 8, 36, 3)))
    config = ResNetConfig(depth=152, width=64, in_channels=3, num_classes=1000, stem="imagenet")
    defaults = Settings()
    estimate = estimate_load_bytes(
        config,
        (3, 224, 224),
        num_samples=defaults.verification_samples,
        warmup_batch=max(batch_sizes_to_warm(defaults.max_batch_size, CPU)),
        max_affine_bytes=defaults.max_affine_bytes,
    )
    # torchvision's resnet152: 60,192,808 parameters, 151,424 running statistics and 155 counters
    assert estimate.network == 4 * (60_192_808 + 151_424) + 8 * 155
    # the network, its folded copy and samples held, verification's float64 activations (one layer's weights in
    # float64 at a time), the read and the warm-up: about 0.9 GiB, a quarter of the default budget
    assert 0.75 * 2**30 < estimate.total < 1.25 * 2**30 < defaults.max_model_bytes
    # on every runtime (the default): the exporter, each candidate's graph and session, the activations of a timed
    # batch in each (8 images, the most under MAX_TIMING_ACTIVATION_BYTES): about 3 GiB, still within the budget
    on_runtimes = estimate_load_bytes(
        config,
        (3, 224, 224),
        num_samples=defaults.verification_samples,
        warmup_batch=max(batch_sizes_to_warm(defaults.max_batch_size, CPU)),
        max_affine_bytes=defaults.max_affine_bytes,
        runtimes=defaults.runtime_candidates,
        max_batch_size=defaults.max_batch_size,
    )
    assert 2.5 * 2**30 < on_runtimes.total < 3.5 * 2**30 < defaults.max_model_bytes


_MEASURE = """
import json, sys, torch
from pathlib import Path
from app.nets import ResNetConfig, build_resnet
from app.serving.loading import load_model
from app.store import InputSpec, save_checkpoint
from tests.serving.conftest import fast_settings

config, shape, root = ResNetConfig(**json.loads(sys.argv[1])), tuple(json.loads(sys.argv[2])), Path(sys.argv[3])
c = shape[0]
spec = InputSpec(channels=c, height=shape[1], width=shape[2], mean=[0.5] * c, std=[0.25] * c)
labels = [str(i) for i in range(config.num_classes)]
save_checkpoint(root / "m", build_resnet(config).eval(), name="m", input=spec, labels=labels)
settings = fast_settings(root, max_batch_size=32, verification_samples=16)  # the defaults that size a load
def kib(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
base = kib("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
loaded = load_model(root / "m", settings, torch.device("cpu"))
print(json.dumps({"kind": loaded.report["kind"], "bytes": (kib("VmHWM") - base) * 1024}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure memory")
@pytest.mark.parametrize(
    ("config", "shape", "kind"),
    [
        (
            {"depth": 18, "width": 16, "in_channels": 1, "activation": "identity", "skips": "annealed"},
            (1, 28, 28),
            "affine",
        ),
        (
            {"depth": 50, "width": 16, "in_channels": 3, "num_classes": 1000, "stem": "imagenet"},
            (3, 64, 64),
            "batchnorm-folded",
        ),
        ({"depth": 18, "width": 16, "in_channels": 3, "num_classes": 100}, (3, 48, 48), "batchnorm-folded"),
    ],
    ids=["linear-resnet18-mnist", "resnet50-w16-1000-classes-64px", "resnet18-w16-48px-float64-verification"],
)
def test_the_estimate_bounds_the_measured_peak_of_a_load(
    tmp_path: Path, config: dict[str, object], shape: tuple[int, int, int], kind: str
) -> None:
    """Each load runs in a fresh process (the first load pays the runtime's one-time costs, as in a server),
    its peak resident memory above the process's size before loading read from ``VmHWM``."""
    root = tmp_path / "store"
    root.mkdir()
    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", _MEASURE, json.dumps(config), json.dumps(shape), str(root)]
    result = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=300, check=True)
    measured = json.loads(result.stdout.splitlines()[-1])
    estimate = estimate_load_bytes(
        ResNetConfig(**config),  # type: ignore[arg-type]
        shape,
        num_samples=16,
        warmup_batch=max(batch_sizes_to_warm(32, CPU)),
        max_affine_bytes=256 * 2**20,
        runtimes=Settings().runtime_candidates,  # fast_settings' (auto: every runtime), as the load measured
        max_batch_size=32,
    ).total
    ratio = estimate / measured["bytes"]
    assert measured["kind"] == kind
    assert 1.0 <= ratio <= 4.0, f"estimate {format_bytes(estimate)}, measured {format_bytes(measured['bytes'])}"
