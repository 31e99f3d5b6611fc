"""How much memory loading a model takes, estimated from its manifest before anything is allocated.

The serving pipeline (:func:`app.serving.loading.load_model`) reads the checkpoint, simplifies and verifies
it, builds, verifies and times each variant on every candidate runtime, then warms both networks up at the batch
sizes it warms (at most ``warmup_batch``). Its peak is bounded by::

    runtime + exporter + network + samples + max(read, simplify, warm-up, runtimes)

``network`` is the float32 original, kept to the end (its weights are the state dict read from disk, assigned
into a network built without weights of its own); ``samples`` the verification images; ``read`` a float32 copy
of a state dict stored in another precision; ``simplify`` what :func:`app.simplify.simplify_bytes`
counts (copies, float64 verification, the affine collapse); ``warm-up`` the simplified network plus one
float32 batch of ``warmup_batch`` inputs and its forward pass; ``exporter`` the one-time cost of the ONNX exporter and
runtimes' libraries (when any ONNX runtime is a candidate); ``runtimes`` the simplified network beside every
candidate's graph and session, and the activations of the largest batch timed (at most
:data:`MAX_TIMING_ACTIVATION_BYTES`) in each. Measured against real loads in ``tests/serving/test_model_budget.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.config import Settings
from app.nets.footprint import forward_bytes, state_bytes
from app.nets.resnet import ResNetConfig
from app.simplify import simplified_bytes, simplify_bytes
from app.store import CheckpointError, Manifest

__all__ = [
    "EXPORTER_BYTES",
    "MAX_TIMING_ACTIVATION_BYTES",
    "RUNTIME_BYTES",
    "LoadEstimate",
    "check_budget",
    "estimate_load_bytes",
    "format_bytes",
    "largest_timed_batch",
]

RUNTIME_BYTES = 128 * 2**20
"""The first load in a process pays one-time costs (torch's CPU kernels, float64 convolutions, autograd) and the
allocator keeps some of what it frees. Counted for every model, since which one comes first is not known here;
with the rest of the estimate it keeps the whole between 1x and 4x of the peaks measured in a fresh process on
2 cores (``tests/serving/test_model_budget.py``: 65-85 MiB for the three architectures there)."""


EXPORTER_BYTES = 352 * 2**20
"""The first load that exports a graph and builds the ONNX runtimes in a process pays for torch's exporter and
onnxscript (240 MiB measured), ONNX Runtime's libraries (30 MiB) and OpenVINO's CPU plugin (50 MiB); once, and only
when an ONNX runtime is a candidate."""

MAX_TIMING_ACTIVATION_BYTES = 256 * 2**20
"""The largest float32 activations one timed batch may need: choosing a variant's batch size stops doubling before
a batch would need more (a ResNet-50 at 224x224 is timed up to 8 images, an MNIST ResNet-18 up to the cap)."""

# Each ONNX runtime holds its graph's weights and may keep a second, repacked copy; the graph itself is one more.
_SESSION_COPIES = 2


@dataclass(frozen=True)
class LoadEstimate:
    """Upper bounds, in bytes, on what loading one model holds at once."""

    network: int  # the float32 original, served to the end
    samples: int  # the verification images shipped beside it, or drawn at random, in float32
    read: int  # the state dict read from disk, beside the network it is copied into
    simplify: int  # simplification and float64 verification, besides the network
    warmup: int  # the simplified network, and a full batch through a forward pass
    runtimes: int = 0  # the simplified network beside every candidate runtime's graph, session and activations
    exporter: int = 0  # the ONNX exporter's and runtimes' one-time cost, when any is a candidate

    @property
    def total(self) -> int:
        stages = max(self.read, self.simplify, self.warmup, self.runtimes)
        return RUNTIME_BYTES + self.exporter + self.network + self.samples + stages

    def describe(self) -> str:
        stages = {
            "read": self.read,
            "simplify and verify": self.simplify,
            "warm-up": self.warmup,
            "runtimes": self.runtimes,
        }
        stage = max(stages, key=stages.__getitem__)
        return (
            f"network {format_bytes(self.network)}, samples {format_bytes(self.samples)}, "
            f"{stage} {format_bytes(stages[stage])}"
        )


def format_bytes(size: int) -> str:
    """``size`` in the largest binary unit under it, e.g. ``"1.5 GiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def estimate_load_bytes(
    config: ResNetConfig,
    input_shape: tuple[int, int, int],
    *,
    num_samples: int,
    warmup_batch: int,
    max_affine_bytes: int,
    runtimes: Sequence[str] = ("eager",),
    max_batch_size: int = 1,
) -> LoadEstimate:
    """Bound the memory of loading a model of ``config`` for ``input_shape`` inputs, allocating nothing.

    Args:
        config: the architecture, as the manifest declares it.
        input_shape: ``(C, H, W)`` of one input.
        num_samples: images verified on besides the random ones (shipped, or ``verification_samples``).
        warmup_batch: the largest batch the networks are warmed up on.
        max_affine_bytes: the cap on a collapsed linear network's map.
        runtimes: the candidate runtimes (``FOLDSERVE_RUNTIMES``).
        max_batch_size: the batcher's cap, the largest batch a candidate may be timed on.
    """
    network = state_bytes(config)
    simplified = simplified_bytes(config, input_shape, max_affine_bytes)
    batch = warmup_batch * math.prod(input_shape) * 4 + forward_bytes(config, input_shape, warmup_batch, 4)
    onnx = sum(name != "eager" for name in runtimes)
    timed = largest_timed_batch(config, input_shape, max_batch_size)
    activations = timed * math.prod(input_shape) * 4 + forward_bytes(config, input_shape, timed, 4)
    # variants are chosen one after the other: the collapsed one's served session beside the original's graph and
    # every candidate session of it (the losers of the collapsed variant are closed by then)
    graphs = (1 + _SESSION_COPIES * onnx) * network + _SESSION_COPIES * simplified if onnx else 0
    return LoadEstimate(
        network=network,
        samples=num_samples * math.prod(input_shape) * 4,
        read=network,
        simplify=simplify_bytes(config, input_shape, num_samples=num_samples, max_affine_bytes=max_affine_bytes),
        warmup=simplified + batch,
        runtimes=simplified + graphs + len(runtimes) * activations,
        exporter=EXPORTER_BYTES if onnx else 0,
    )


def largest_timed_batch(config: ResNetConfig, input_shape: tuple[int, int, int], max_batch_size: int) -> int:
    """The largest batch, at most ``max_batch_size``, whose activations fit :data:`MAX_TIMING_ACTIVATION_BYTES`."""
    size = max_batch_size
    while size > 1 and forward_bytes(config, input_shape, size, 4) > MAX_TIMING_ACTIVATION_BYTES:
        size //= 2
    return size


def check_budget(
    manifest: Manifest, settings: Settings, *, num_samples: int, warmup_batch: int, name: str
) -> LoadEstimate:
    """Refuse a model whose load would need more than ``settings.max_model_bytes``.

    Args:
        manifest: the model's validated manifest.
        settings: the budget and the knobs that size the load.
        num_samples: images verified on besides the random ones.
        warmup_batch: the largest batch the networks are warmed up on.
        name: the manifest's path relative to the model store, for the message.

    Raises:
        CheckpointError: giving the estimate, its largest parts and the budget.
    """
    estimate = estimate_load_bytes(
        manifest.architecture.to_config(),
        manifest.input.shape,
        num_samples=num_samples,
        warmup_batch=warmup_batch,
        max_affine_bytes=settings.max_affine_bytes,
        runtimes=settings.runtime_candidates,
        max_batch_size=settings.max_batch_size,
    )
    if estimate.total > settings.max_model_bytes:
        raise CheckpointError(
            name,
            f"loading this model needs about {format_bytes(estimate.total)} ({estimate.describe()}), more than "
            f"FOLDSERVE_MAX_MODEL_BYTES={settings.max_model_bytes} ({format_bytes(settings.max_model_bytes)}); "
            "refused before building anything",
        )
    return estimate
