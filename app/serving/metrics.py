"""Every Prometheus metric of the service, declared against a registry that is passed in.

Names follow the Prometheus conventions (``foldserve_`` prefix, base units, ``_total`` on counters) and are
histograms, not summaries, so that p50/p99 aggregate across workers and replicas
(``deploy/prometheus/rules.yml``). Every label value is created up front by :meth:`ServingMetrics.add_model`
(each model, variant, protocol, status code and rejection reason the service can produce), so every series
exists at zero from the moment the model is discovered and ``rate()`` sees its first increment. No label
value ever comes from a client.

The hot path never calls ``labels()``: :class:`VariantSeries` and :class:`RequestSeries` hold the children
of one model's variant, bound once.

With several worker processes (``FOLDSERVE_WORKERS``), prometheus_client's multiprocess mode keeps each
worker's values in ``PROMETHEUS_MULTIPROC_DIR`` and one scrape sums them; each gauge below says how its
values from several workers combine (``multiprocess_mode``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from app.config import RUNTIME_NAMES
from app.serving.errors import Overloaded

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "FORWARD_PATHS",
    "LATENCY_BUCKETS",
    "LOAD_STAGES",
    "PROTOCOLS",
    "REJECTION_REASONS",
    "STATUSES",
    "VARIANTS",
    "RequestClock",
    "RequestSeries",
    "ServingMetrics",
    "VariantSeries",
]

VARIANTS = ("collapsed", "original")
"""The two networks served per model: the simplified one and the checkpoint as trained."""

PROTOCOLS = ("predict", "v2-rest", "v2-grpc")
"""The front doors a request can come through: ``/predict``, the Open Inference Protocol over REST and gRPC."""

STATUSES = ("200", "400", "404", "408", "413", "415", "422", "499", "500", "503", "504")
"""Every HTTP status an inference request can end with; 499 (as nginx): the client went away first."""

REJECTION_REASONS = ("queue_full", "deadline", "overloaded")
"""Why a request was refused without an answer: its variant's queue was full, its deadline passed, or the
process had too many bytes or pixels in flight."""

FORWARD_PATHS = ("inline", "batched")
"""Where a forward pass ran: on the event loop (a variant measured cheap, with nothing queued) or in the batcher."""

LOAD_STAGES = ("read", "build", "simplify", "verify", "runtimes", "warmup", "speedup")
"""The steps of loading one model, in order; ``foldserve_model_load_seconds`` has one series per stage."""

LATENCY_BUCKETS: tuple[float, ...] = (
    *(round(m * 10.0**e, 10) for e in range(-5, -1) for m in (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
"""Latency bucket bounds in seconds, from 10 µs to 10 s: six per decade up to 100 ms, where the collapsed
model's inference (tens of µs) and nearly every answer (hundreds of µs to a few ms) fall, so recorded p50s
come from narrow buckets rather than interpolation across a decade; three per decade above.
"""

BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(9))
"""Images per forward pass: powers of two from 1 to 256."""


@dataclass(frozen=True)
class VariantSeries:
    """The series of one model's variant, bound once: what the data plane and its batcher write."""

    decode_duration: Histogram
    queue_duration: Histogram
    inference_duration: Histogram
    batch_size: Histogram
    queue_depth: Gauge
    _rejections: dict[str, Counter] = field(repr=False)
    _forwards: dict[str, Counter] = field(repr=False)

    def rejections(self, reason: str) -> Counter:
        """The counter of one of :data:`REJECTION_REASONS`."""
        return self._rejections[reason]

    def forwards(self, path: str) -> Counter:
        """Forward passes that ran on one of :data:`FORWARD_PATHS`."""
        return self._forwards[path]


@dataclass(frozen=True)
class RequestSeries:
    """The request series of one model's variant through one protocol, bound once."""

    duration: Histogram | None  # None for requests answered before a model was resolved
    _counters: dict[str, Counter] = field(repr=False)
    _metric: Counter = field(repr=False)
    _labels: tuple[str, str, str] = field(repr=False)

    def done(self, status: int, seconds: float) -> None:
        """Count one answer (or a client gone away, 499) and its whole handling time."""
        key = str(status)
        counter = self._counters.get(key)
        if counter is None:  # a status outside STATUSES: still server-chosen, never a client's string
            counter = self._metric.labels(*self._labels, key)
        counter.inc()
        if self.duration is not None:
            self.duration.observe(seconds)


class RequestClock:
    """One inference request's accounting, whatever door it came through: timed from its creation, and counted
    once, by :meth:`done`, under the model and variant it resolved to (none if it never did).

    Args:
        metrics: where the request is counted.
        protocol: one of :data:`PROTOCOLS`.
    """

    __slots__ = ("_metrics", "_protocol", "_series", "_started", "_variant")

    def __init__(self, metrics: ServingMetrics, protocol: str) -> None:
        self._metrics = metrics
        self._protocol = protocol
        self._series: RequestSeries | None = None
        self._variant: VariantSeries | None = None
        self._started = time.perf_counter()

    def resolved(self, model: str, variant: str) -> None:
        """Count this request under ``model``'s ``variant`` (the last call wins)."""
        self._series = self._metrics.request(model, variant, self._protocol)
        self._variant = self._metrics.variant(model, variant)

    def done(self, status: int, error: BaseException | None = None) -> None:
        """Count the request as answered with the HTTP ``status`` (gRPC: its service error's status).

        An :class:`~app.serving.errors.Overloaded` refusal also counts as a rejection ``overloaded`` of the
        variant: the byte budget and the decode pool, which raise it, do not count their own.
        """
        if isinstance(error, Overloaded) and self._variant is not None:
            self._variant.rejections("overloaded").inc()
        series = self._series or self._metrics.request("", "", self._protocol)
        series.done(status, time.perf_counter() - self._started)


class ServingMetrics:
    """The service's metrics, registered in ``registry`` (a fresh ``CollectorRegistry`` in tests)."""

    def __init__(self, registry: CollectorRegistry, *, multiprocess_dir: Path | None = None) -> None:
        self.registry = registry
        self.multiprocess_dir = multiprocess_dir
        mv = ("model", "variant")
        self.requests = Counter(
            "foldserve_requests",
            "Inference answers by status code (499: the client went away first)",
            [*mv, "protocol", "status"],
            registry=registry,
        )
        self.request_duration = self._latency(
            "foldserve_request_duration_seconds", "Whole handling of one inference request", (*mv, "protocol")
        )
        self.decode_duration = self._latency("foldserve_decode_duration_seconds", "Image decoding per request", mv)
        self.queue_duration = self._latency("foldserve_queue_duration_seconds", "Wait in the batch queue", mv)
        self.inference_duration = self._latency(
            "foldserve_inference_duration_seconds", "One forward pass of a batch", mv
        )
        self.batch_size = Histogram(
            "foldserve_batch_size", "Images per forward pass", mv, buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.forward_passes = Counter(
            "foldserve_forward_passes",
            "Forward passes by where they ran: inline (on the event loop) or batched",
            [*mv, "path"],
            registry=registry,
        )
        self.queue_depth = self._gauge("foldserve_queue_depth", "Images waiting in the batch queue", mv, "livesum")
        self.rejections = Counter(
            "foldserve_rejections", "Requests refused without an answer, by reason", [*mv, "reason"], registry=registry
        )
        self.model_parameters = self._gauge("foldserve_model_parameters", "Parameters of the network", mv, "max")
        self.model_macs = self._gauge("foldserve_model_macs", "Multiply-accumulates per image", mv, "max")
        self.inline = self._gauge(
            "foldserve_inline",
            "1 where a variant's forward pass was measured cheap enough to run on the event loop, else 0",
            mv,
            "max",
        )
        self.variant_runtime = self._gauge(
            "foldserve_variant_runtime_info",
            "1 for each runtime a variant serves on (chosen by measurement at load), 0 for the other runtimes",
            (*mv, "runtime"),
            "max",
        )
        self.variant_max_batch = self._gauge(
            "foldserve_variant_max_batch_size",
            "Largest batch of a variant's forward passes: the smallest within 5% of the best images/s at load",
            mv,
            "max",
        )
        self.verification_error = self._gauge(
            "foldserve_verification_error",
            "Error of the simplified network against the original at load (max_abs, or max_rel to the output scale)",
            ("model", "measure"),
            "max",
        )
        self.load_seconds = self._gauge(
            "foldserve_model_load_seconds", "Seconds spent in each stage of loading", ("model", "stage"), "max"
        )
        self.forward_speedup = self._gauge(
            "foldserve_load_forward_speedup_ratio",
            "Forward pass alone, measured once at load: median batch-1 latency of the original over the simplified "
            "network (not end to end: the live ratio is the recording rule model:foldserve_request_duration_"
            "seconds:p50_ratio_original_over_collapsed_1m)",
            ("model",),
            "max",
        )
        self.model_ready = self._gauge(
            "foldserve_model_ready", "1 once the model serves (in every worker), else 0", ("model",), "livemin"
        )
        self.workers = self._gauge("foldserve_workers", "Server processes serving", (), "livesum")
        self.memory = self._gauge(
            "foldserve_memory_bytes",
            "Memory of the server processes, summed: rss (resident) and pss (proportional: shared pages divided "
            "between the processes that share them, so that the sum over workers is what they really use)",
            ("measure",),
            "livesum",
        )
        self._variants: dict[tuple[str, str], VariantSeries] = {}
        self._requests: dict[tuple[str, str, str], RequestSeries] = {}

    def exposition(self) -> bytes:
        """The Prometheus text of every series: of all the workers together in multiprocess mode."""
        return generate_latest(self._scraped())

    def families(self) -> list[Metric]:
        """Every metric family with its samples, as one scrape of :meth:`exposition` reads them."""
        return list(self._scraped().collect())

    def _scraped(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))
        return merged

    def read_memory(self) -> None:
        """Set this process's share of :attr:`memory` from ``/proc/self/smaps_rollup`` (Linux; else nothing)."""
        try:
            text = Path("/proc/self/smaps_rollup").read_text()
        except OSError:
            return
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                self.memory.labels(key.lower()).set(float(value.split()[0]) * 1024)

    def _latency(self, name: str, documentation: str, labels: tuple[str, ...]) -> Histogram:
        return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

    def _gauge(self, name: str, documentation: str, labels: tuple[str, ...], mode: str) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry, multiprocess_mode=mode)  # type: ignore[arg-type]

    def variant(self, model: str, variant: str) -> VariantSeries:
        """The bound series of ``model``'s ``variant`` (created on first use; :meth:`add_model` creates them)."""
        key = (model, variant)
        series = self._variants.get(key)
        if series is None:
            series = self._variants[key] = VariantSeries(
                decode_duration=self.decode_duration.labels(model, variant),
                queue_duration=self.queue_duration.labels(model, variant),
                inference_duration=self.inference_duration.labels(model, variant),
                batch_size=self.batch_size.labels(model, variant),
                queue_depth=self.queue_depth.labels(model, variant),
                _rejections={r: self.rejections.labels(model, variant, r) for r in REJECTION_REASONS},
                _forwards={p: self.forward_passes.labels(model, variant, p) for p in FORWARD_PATHS},
            )
        return series

    def request(self, model: str, variant: str, protocol: str) -> RequestSeries:
        """The bound request series of ``model``'s ``variant`` through ``protocol``.

        ``model`` and ``variant`` are empty for requests answered before a model was resolved (an unknown
        model name, invalid parameters): they are counted, but have no latency series.
        """
        key = (model, variant, protocol)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = RequestSeries(
                duration=self.request_duration.labels(model, variant, protocol) if model else None,
                _counters={s: self.requests.labels(model, variant, protocol, s) for s in STATUSES},
                _metric=self.requests,
                _labels=key,
            )
        return series

    def add_model(self, model: str) -> None:
        """Create every series of ``model`` at zero, so dashboards and rates see it before its first request."""
        for variant in VARIANTS:
            self.variant(model, variant)
            for protocol in PROTOCOLS:
                self.request(model, variant, protocol)
            self.model_parameters.labels(model, variant)
            self.model_macs.labels(model, variant)
            self.inline.labels(model, variant)
            self.variant_max_batch.labels(model, variant)
            for runtime in RUNTIME_NAMES:
                self.variant_runtime.labels(model, variant, runtime)
        for measure in ("max_abs", "max_rel"):
            self.verification_error.labels(model=model, measure=measure)
        for stage in LOAD_STAGES:
            self.load_seconds.labels(model=model, stage=stage)
        self.forward_speedup.labels(model=model)
        self.model_ready.labels(model=model).set(0)
