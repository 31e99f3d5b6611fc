"""Every Prometheus metric of the service, declared against a registry that is passed in.

Names follow the Prometheus conventions (``foldserve_`` prefix, base units, ``_total`` on counters) and are
histograms, not summaries, so that p50/p99 aggregate across replicas (``deploy/prometheus/rules.yml``).
Label values for a model are created up front by :meth:`ServingMetrics.add_model`, so every series exists
(at zero) from the moment the model is discovered.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BATCH_SIZE_BUCKETS", "LATENCY_BUCKETS", "LOAD_STAGES", "VARIANTS", "BatcherMetrics", "ServingMetrics"]

VARIANTS = ("collapsed", "original")
"""The two networks served per model: the simplified one and the checkpoint as trained."""

LOAD_STAGES = ("read", "build", "simplify", "verify", "device", "warmup", "speedup")
"""The steps of loading one model, in order; ``foldserve_model_load_seconds`` has one series per stage."""

LATENCY_BUCKETS: tuple[float, ...] = (*(round(m * 10.0**e, 10) for e in range(-5, 1) for m in (1.0, 2.5, 5.0)), 10.0)
"""Latency bucket bounds in seconds: 1, 2.5 and 5 per decade from 10 µs to 10 s.

A collapsed model answers in microseconds and an original ResNet in milliseconds; both must land in
different buckets for the p50/p99 recording rules to tell them apart.
"""

BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(9))
"""Images per forward pass: powers of two from 1 to 256."""


@dataclass(frozen=True)
class BatcherMetrics:
    """The series one :class:`~app.serving.batching.DynamicBatcher` writes, bound to its model and variant."""

    model: str
    variant: str
    metrics: ServingMetrics

    @property
    def queue_depth(self) -> Gauge:
        return self.metrics.queue_depth.labels(model=self.model, variant=self.variant)

    @property
    def batch_size(self) -> Histogram:
        return self.metrics.batch_size.labels(model=self.model, variant=self.variant)

    @property
    def inference_duration(self) -> Histogram:
        return self.metrics.inference_duration.labels(model=self.model, variant=self.variant)

    def rejections(self, reason: str) -> Counter:
        return self.metrics.rejections.labels(model=self.model, variant=self.variant, reason=reason)


class ServingMetrics:
    """The service's metrics, registered in ``registry`` (a fresh ``CollectorRegistry`` in tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        mv = ("model", "variant")
        self.requests = Counter(
            "foldserve_requests", "/predict answers by status code", [*mv, "status"], registry=registry
        )
        self.request_duration = self._latency("foldserve_request_duration_seconds", "Whole /predict handling", mv)
        self.decode_duration = self._latency("foldserve_decode_duration_seconds", "Image decoding per request", mv)
        self.queue_duration = self._latency("foldserve_queue_duration_seconds", "Wait in the batch queue", mv)
        self.inference_duration = self._latency(
            "foldserve_inference_duration_seconds", "One forward pass of a batch", mv
        )
        self.batch_size = Histogram(
            "foldserve_batch_size", "Images per forward pass", mv, buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge("foldserve_queue_depth", "Images waiting in the batch queue", mv, registry=registry)
        self.rejections = Counter(
            "foldserve_rejections", "Requests refused by the batcher", [*mv, "reason"], registry=registry
        )
        self.model_parameters = Gauge("foldserve_model_parameters", "Parameters of the network", mv, registry=registry)
        self.model_macs = Gauge("foldserve_model_macs", "Multiply-accumulates per image", mv, registry=registry)
        self.verification_error = Gauge(
            "foldserve_verification_error",
            "Error of the simplified network against the original at load (max_abs, or max_rel to the output scale)",
            ["model", "measure"],
            registry=registry,
        )
        self.load_seconds = Gauge(
            "foldserve_model_load_seconds",
            "Seconds spent in each stage of loading",
            ["model", "stage"],
            registry=registry,
        )
        self.speedup_ratio = Gauge(
            "foldserve_speedup_ratio",
            "Median batch-1 latency of the original over the simplified network, measured at load",
            ["model"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "foldserve_model_ready", "1 once the model serves, else 0", ["model"], registry=registry
        )

    def _latency(self, name: str, documentation: str, labels: tuple[str, ...]) -> Histogram:
        return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

    def for_batcher(self, model: str, variant: str) -> BatcherMetrics:
        """The series of one model's variant, for its batcher."""
        return BatcherMetrics(model, variant, self)

    def add_model(self, model: str) -> None:
        """Create every series of ``model`` at zero, so dashboards and rates see it before its first request."""
        for variant in VARIANTS:
            for metric in (
                self.request_duration,
                self.decode_duration,
                self.queue_duration,
                self.inference_duration,
                self.batch_size,
                self.queue_depth,
                self.model_parameters,
                self.model_macs,
            ):
                metric.labels(model=model, variant=variant)
            for status in ("200",):
                self.requests.labels(model=model, variant=variant, status=status)
            for reason in ("queue_full", "deadline"):
                self.rejections.labels(model=model, variant=variant, reason=reason)
        for measure in ("max_abs", "max_rel"):
            self.verification_error.labels(model=model, measure=measure)
        for stage in LOAD_STAGES:
            self.load_seconds.labels(model=model, stage=stage)
        self.speedup_ratio.labels(model=model)
        self.model_ready.labels(model=model).set(0)
