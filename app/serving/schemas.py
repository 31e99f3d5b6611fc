"""The JSON bodies the service answers with (pydantic models, so they appear in the OpenAPI docs)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.serving.registry import ModelEntry

__all__ = [
    "ClassScore",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "ModelInfo",
    "ModelList",
    "PredictResponse",
    "Prediction",
    "Readiness",
    "Timings",
    "VariantInfo",
    "model_info",
]


class ErrorDetail(BaseModel):
    code: str = Field(description="a stable, machine-readable name of the error (queue_full, invalid_image, ...)")
    message: str = Field(description="what was wrong, for people")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


class ClassScore(BaseModel):
    label: str
    index: int
    probability: float


class Prediction(ClassScore):
    """The most probable class of one image, and the ``top_k`` most probable ones."""

    top_k: list[ClassScore]


class Timings(BaseModel):
    """Milliseconds spent on one request: decoding, waiting for a batch, the batch's forward pass, overall."""

    decode: float
    queue: float
    inference: float
    total: float


class PredictResponse(BaseModel):
    model: str
    variant: Literal["collapsed", "original"]
    simplification: str | None = Field(description="what the collapsed variant is (affine, ...); null for original")
    predictions: list[Prediction]
    timings_ms: Timings


class CandidateInfo(BaseModel):
    status: Literal["served", "passed", "failed", "unavailable", "not built"]
    reason: str | None = Field(
        description="why it failed, is unavailable, or was not built (a runtime choice recorded at an earlier load "
        "of the same graph was reused)"
    )
    graph: Literal["exported", "cache"] | None = Field(description="where its ONNX graph came from (eager: null)")
    build_seconds: float
    errors: dict[str, float | int | None] | None = Field(
        description="its outputs against the original in float64: max_abs_error, max_rel_error, top1_agreement, "
        "num_inputs"
    )
    latency_ms: dict[str, float] = Field(description="milliseconds per forward pass by batch size, fastest round")


class VariantInfo(BaseModel):
    parameters: int
    macs: int = Field(description="multiply-accumulates per image")
    latency_ms: float = Field(description="median batch-1 forward pass on its runtime, measured at load")
    runtime: str = Field(
        description="the runtime it serves on, the fastest candidate that passed verification; 'small+large' where "
        "its larger batches run on a second one"
    )
    runtime_from_batch: dict[str, int] = Field(description="each runtime it serves on, and the smallest batch it takes")
    max_batch_size: int = Field(
        description="largest batch of its forward passes: the smallest within 5% of the best images/s at load"
    )
    images_per_s: dict[str, float] = Field(description="images/s on its runtime by batch size, measured at load")
    candidates: dict[str, CandidateInfo] = Field(description="every candidate runtime: verification and times")
    path: Literal["inline", "batched"] = Field(
        description="where its forward passes run: inline on the event loop when nothing is queued (a variant "
        "measured at most FOLDSERVE_INLINE_MAX_FORWARD_US), else batched"
    )


class ModelInfo(BaseModel):
    """A model of the store: what it is, how it was simplified and verified, and whether it serves."""

    name: str
    status: Literal["loading", "ready", "failed", "unloaded"]
    last_error: str | None = Field(default=None, description="why the last load failed, while an older version serves")
    reason: str | None = None
    version: str | None = None
    architecture: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    labels: list[str] | None = None
    training: dict[str, Any] | None = None
    simplification: dict[str, Any] | None = Field(
        default=None, description="the simplification and verification report"
    )
    verification_samples: str | None = None
    variants: dict[str, VariantInfo] | None = None
    forward_speedup: float | None = Field(
        default=None,
        description="forward pass alone, measured once at load: median batch-1 latency of the original over the "
        "simplified network, each on the runtime it serves on (end to end, see the live ratio in the recording rules)",
    )
    load_seconds: dict[str, float] | None = None


class ModelList(BaseModel):
    default: str | None
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    models: list[str] = Field(description="the models that serve")
    failed: dict[str, str] = Field(default_factory=dict, description="each model that failed to load, and why")


def model_info(entry: ModelEntry) -> ModelInfo:
    """Describe ``entry`` for /models."""
    info = ModelInfo(
        name=entry.name,
        status=entry.status,
        reason=entry.reason,
        last_error=entry.last_error,
        simplification=_finite(entry.report),
    )
    loaded = entry.loaded
    if loaded is None:
        return info
    manifest, report = loaded.manifest, loaded.report
    variants = {
        variant: VariantInfo(
            parameters=report[f"params_{suffix}"],
            macs=report[f"macs_{suffix}"],
            latency_ms=loaded.latency_s[variant] * 1e3,
            path="inline" if entry.variants[variant].inline else "batched",
            **_finite(loaded.runtimes[variant].as_dict()),
        )
        for variant, suffix in (("collapsed", "after"), ("original", "before"))
    }
    return info.model_copy(
        update={
            "version": manifest.version,
            "architecture": manifest.architecture.model_dump(),
            "input": manifest.input.model_dump(),
            "labels": manifest.labels,
            "training": manifest.training.model_dump() if manifest.training else None,
            "verification_samples": loaded.samples,
            "variants": variants,
            "forward_speedup": loaded.speedup,
            "load_seconds": loaded.stage_seconds,
        }
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, which JSON cannot carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
