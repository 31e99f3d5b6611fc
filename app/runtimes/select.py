"""Choosing a variant's runtime: build every candidate, verify it in float64, time it, serve the fastest.

For one variant (one verified ``nn.Module``), :func:`select_runtime`

1. builds each candidate runtime: ``eager`` wraps the module; ``onnxruntime`` and ``openvino`` run one ONNX graph,
   read from the :class:`~app.runtimes.cache.GraphCache` or exported (and then cached);
2. verifies each one's float32 outputs on the verification inputs against the original network's float64 outputs,
   with the simplification's own tolerance and statistics; a candidate whose graph came from the cache and fails is
   exported again and verified again, once; a candidate that cannot be built or fails is reported and never served;
3. times the candidates that passed at batch 1, 2, 4, ... up to the batcher's ``max_batch_size`` (interleaved
   rounds, each candidate's fastest round; one far behind stops being timed): the variant's largest batch is the
   smallest whose images/s come within :data:`BATCH_GAIN` of the best size's;
4. serves the fastest at batch 1, and sends batches from the size where another one is faster to that one when it
   is :data:`SPLIT_GAIN` faster at the variant's largest batch; the others are closed.

The choice is recorded in the cache beside the graph (:meth:`~app.runtimes.cache.GraphCache.write_choice`, with the
context it was timed in); a later load of the same graph in the same context builds and verifies, in float64 as
above, only the runtimes chosen, and times none. Where one of them fails now, every candidate is built and timed.

Everything here blocks; the service runs it in the loading thread.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from app.benchmark import compare_forward
from app.runtimes.base import Runtime, RuntimeUnavailable
from app.runtimes.cache import GraphCache
from app.runtimes.eager import EagerRuntime
from app.runtimes.onnx_graph import GraphRefused, export_onnx
from app.runtimes.onnx_runtime import OnnxRuntime
from app.runtimes.openvino_runtime import OpenVinoRuntime
from app.simplify.verify import COMPARE_CHUNK_VALUES, error_stats

__all__ = [
    "BATCH_GAIN",
    "RUNTIMES",
    "CandidateReport",
    "NoRuntimePassed",
    "SelectionOptions",
    "SplitByBatch",
    "VariantRuntime",
    "build_candidates",
    "part_for",
    "select_runtime",
    "served",
]

logger = logging.getLogger(__name__)

RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (EagerRuntime, OnnxRuntime, OpenVinoRuntime)}
"""Every runtime foldserve knows, by name, in the order candidates are tried (and ties broken)."""

BATCH_GAIN = 1.05
"""A variant's largest batch is the smallest whose images/s come within this factor of the best size's: every image
of a larger batch waits for the whole pass, so a batch size that buys under 5% is latency spent for nothing."""

SPLIT_GAIN = 1.05
"""A variant keeps a second runtime for its larger batches only where that one is at least this much faster at the
largest batch than the runtime fastest at batch 1 (small networks: ONNX Runtime at batch 1, OpenVINO at 16)."""

DROP_RATIO = 1.5
"""A candidate this much slower than the fastest at one batch size is not timed at the larger ones (eager PyTorch
against the ONNX runtimes on a ResNet-18: 2-3x at batch 1, 1.5-1.9x at 16)."""

CURVE_ROUNDS = 3
"""Timing rounds at each batch size past 1: telling 5% apart needs no more, and the large batches of a slow network
are the longest part of loading it."""

Status = Literal["served", "passed", "failed", "unavailable", "not built"]


class SplitByBatch(Runtime):
    """One variant on two runtimes: batches smaller than ``split`` on ``small``, the others on ``large``."""

    name = "split"

    def __init__(self, small: Runtime, large: Runtime, *, split: int) -> None:
        self.small, self.large, self.split = small, large, split
        self.device, self.threads = small.device, max(small.threads, large.threads)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return (self.small if len(batch) < self.split else self.large)(batch)

    def sizes_to_prepare(self, max_batch_size: int) -> set[int]:
        small = {size for size in self.small.sizes_to_prepare(max_batch_size) if size < self.split}
        return small | {size for size in self.large.sizes_to_prepare(max_batch_size) if size >= self.split}

    def close(self) -> None:
        self.small.close()
        self.large.close()


class NoRuntimePassed(RuntimeError):
    """No candidate runtime of a variant could be built and verified; the message lists why, per candidate."""


@dataclass
class CandidateReport:
    """What became of one candidate runtime of one variant."""

    runtime: str
    status: Status = "failed"
    reason: str | None = None  # why it failed, is unavailable or was not built
    graph: Literal["exported", "cache"] | None = None  # where its ONNX graph came from (eager: none)
    build_seconds: float = 0.0  # building it, its export included
    errors: dict[str, Any] | None = None  # max_abs_error, max_rel_error, top1_agreement, num_inputs
    latency_s: dict[int, float] = field(default_factory=dict)  # batch size -> seconds per call, fastest round

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "graph": self.graph,
            "build_seconds": self.build_seconds,
            "errors": self.errors,
            "latency_ms": {str(size): seconds * 1e3 for size, seconds in sorted(self.latency_s.items())},
        }


@dataclass
class VariantRuntime:
    """The runtime a variant serves on, its largest batch, and the report of every candidate."""

    runtime: Runtime
    max_batch_size: int  # the smallest batch within BATCH_GAIN of the best images/s (at most the batcher's cap)
    images_per_s: dict[int, float]  # as served, per batch size up to max_batch_size
    candidates: dict[str, CandidateReport]
    parts: dict[str, int]  # each runtime served on, and the smallest batch it takes

    @property
    def name(self) -> str:
        """The runtime served on, or ``small+large`` where batches from some size go to a second one."""
        return "+".join(self.parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "runtime_from_batch": dict(self.parts),
            "max_batch_size": self.max_batch_size,
            "images_per_s": {str(size): rate for size, rate in sorted(self.images_per_s.items())},
            "candidates": {name: report.as_dict() for name, report in self.candidates.items()},
        }


@dataclass(frozen=True)
class SelectionOptions:
    """How candidates are built, verified and timed."""

    candidates: Sequence[str]  # runtime names, a subset of RUNTIMES, in order
    device: torch.device
    threads: int  # intra-op threads of every runtime
    tolerance: float  # largest error relative to the output scale that passes
    max_batch_size: int  # the batcher's cap
    measure_batch: bool = True  # the largest batch by measurement; False: max_batch_size (or less, for memory)
    rounds: int = 7  # interleaved timing rounds
    block_seconds: float = 0.02  # least time of one timed block of calls
    cache: GraphCache | None = None  # where exported graphs are kept between starts


def select_runtime(
    module: nn.Module,
    input_shape: tuple[int, int, int],
    inputs: torch.Tensor,
    reference: torch.Tensor,
    options: SelectionOptions,
    *,
    cache_key: str | None = None,
) -> VariantRuntime:
    """Build, verify and time every candidate runtime of ``module``; return the fastest that passed.

    Args:
        module: the verified float32 network, eval mode, on the CPU.
        input_shape: ``(C, H, W)`` of one input.
        inputs: the verification inputs, float32 ``[N, C, H, W]``.
        reference: the original network's float64 outputs for ``inputs``.
        options: candidates, device, threads, tolerance, batch cap, timing and cache.
        cache_key: the graph's key in ``options.cache`` (None: not cached).

    Raises:
        NoRuntimePassed: every candidate failed or is unavailable (the message says why, for each).
    """
    cache = options.cache if cache_key is not None else None
    context = choice_context(options) if cache is not None else None
    if cache is not None and context is not None and cache_key is not None:
        choice = cache.read_choice(cache_key, context)
        recorded = _recorded(choice, options)
        if choice is not None and recorded is None:
            logger.warning(
                "the runtime choice recorded for %s is not one this load could make; timing again", cache_key
            )
        if recorded is not None:
            reused = _reuse(recorded, module, input_shape, inputs, reference, options, cache_key)
            if reused is not None:
                return reused
    reports, built = build_candidates(module, input_shape, inputs, reference, options, cache_key=cache_key)
    if not built:
        why = "; ".join(f"{name}: {report.reason}" for name, report in reports.items())
        raise NoRuntimePassed(f"no runtime passed: {why}")
    try:
        parts, size, curve = _choose(built, reports, inputs[:1], options)
    except BaseException:
        _close(built.values())
        raise
    _close(runtime for name, runtime in built.items() if name not in parts)
    for name in parts:
        reports[name].status = "served"
    chosen = VariantRuntime(_serving(built, parts), size, curve, reports, parts)
    if cache is not None and context is not None and cache_key is not None:
        cache.write_choice(cache_key, context, _record(chosen))
    return chosen


def _serving(built: dict[str, Runtime], parts: dict[str, int]) -> Runtime:
    served_on = [built[name] for name in parts]
    return served_on[0] if len(served_on) == 1 else SplitByBatch(*served_on, split=max(parts.values()))


def choice_context(options: SelectionOptions) -> dict[str, Any]:
    """What a runtime choice depends on besides the graph: a choice recorded in another context is timed again."""
    device = options.device
    machine, versions = _process_context()
    return {
        "candidates": list(options.candidates),
        "threads": options.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "max_batch_size": options.max_batch_size,
        "measure_batch": options.measure_batch,
        "machine": list(machine),
        "versions": dict(versions),
    }


@functools.cache
def _process_context() -> tuple[tuple[str, str, int | None], tuple[tuple[str, str | None], ...]]:
    """The machine (architecture, CPU model, cores) and the runtimes' package versions: read once per process."""
    versions: list[tuple[str, str | None]] = []
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            versions.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((package, None))
    return (platform.machine(), _cpu_model(), os.cpu_count()), tuple(versions)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


@dataclass(frozen=True)
class _Recorded:
    parts: dict[str, int]
    max_batch_size: int
    images_per_s: dict[int, float]
    latency_s: dict[str, dict[int, float]]


def _record(chosen: VariantRuntime) -> dict[str, Any]:
    return {
        "parts": dict(chosen.parts),
        "max_batch_size": chosen.max_batch_size,
        "images_per_s": {str(size): rate for size, rate in chosen.images_per_s.items()},
        "latency_s": {
            name: {str(size): s for size, s in report.latency_s.items()} for name, report in chosen.candidates.items()
        },
    }


def _recorded(choice: dict[str, Any] | None, options: SelectionOptions) -> _Recorded | None:
    """The recorded ``choice`` if every field is what :func:`_record` writes for these options; else None."""
    if choice is None:
        return None

    def sizes(values: Any) -> dict[int, float] | None:
        if not isinstance(values, dict):
            return None
        out = {}
        for size, value in values.items():
            if not (
                isinstance(size, str)
                and size.isascii()
                and size.isdigit()
                and isinstance(value, float)
                and 0 < value < math.inf
            ):
                return None
            out[int(size)] = value
        return out if all(1 <= size <= options.max_batch_size for size in out) else None

    parts, largest = choice.get("parts"), choice.get("max_batch_size")
    rates, latency = sizes(choice.get("images_per_s")), choice.get("latency_s")
    if not (isinstance(parts, dict) and parts and type(largest) is int and 1 <= largest <= options.max_batch_size):
        return None
    if (
        not all(
            name in options.candidates and type(start) is int and 1 <= start <= largest for name, start in parts.items()
        )
        or sorted(parts.values())[0] != 1
    ):
        return None
    if rates is None or not isinstance(latency, dict) or not set(latency) <= set(options.candidates):
        return None
    latencies = {name: sizes(values) for name, values in latency.items()}
    if any(values is None for values in latencies.values()):
        return None
    return _Recorded(dict(parts), largest, rates, {name: v for name, v in latencies.items() if v is not None})


def _reuse(
    recorded: _Recorded,
    module: nn.Module,
    input_shape: tuple[int, int, int],
    inputs: torch.Tensor,
    reference: torch.Tensor,
    options: SelectionOptions,
    cache_key: str,
) -> VariantRuntime | None:
    """The recorded choice, its runtimes built and verified; None (nothing left open) where one of them fails."""
    graphs = _Graphs(module, input_shape, options.cache, cache_key)
    reports: dict[str, CandidateReport] = {}
    built: dict[str, Runtime] = {}
    for name in options.candidates:
        if name not in recorded.parts:
            reason = "the runtime choice timed at an earlier load of this graph was reused"
            reports[name] = CandidateReport(name, status="not built", reason=reason)
        else:
            reports[name], runtime = _build_verified(name, module, graphs, inputs, reference, options)
            if runtime is None:
                logger.warning(
                    "the recorded runtime choice %s of %s does not hold: %s %s (%s); every candidate is timed again",
                    "+".join(recorded.parts),
                    cache_key,
                    name,
                    reports[name].status,
                    reports[name].reason,
                )
                _close(built.values())
                return None
            reports[name].status = "served"
            built[name] = runtime
        reports[name].latency_s = dict(recorded.latency_s.get(name, {}))
    parts = dict(sorted(recorded.parts.items(), key=lambda part: part[1]))  # the batch-1 runtime first
    return VariantRuntime(_serving(built, parts), recorded.max_batch_size, recorded.images_per_s, reports, parts)


def build_candidates(
    module: nn.Module,
    input_shape: tuple[int, int, int],
    inputs: torch.Tensor,
    reference: torch.Tensor,
    options: SelectionOptions,
    *,
    cache_key: str | None = None,
) -> tuple[dict[str, CandidateReport], dict[str, Runtime]]:
    """Build and verify every candidate of ``options`` (arguments as :func:`select_runtime`).

    Returns:
        The report of every candidate, and the runtimes of those that passed (the caller closes them).
    """
    graphs = _Graphs(module, input_shape, options.cache, cache_key)
    reports: dict[str, CandidateReport] = {}
    built: dict[str, Runtime] = {}
    for name in options.candidates:
        reports[name], runtime = _build_verified(name, module, graphs, inputs, reference, options)
        if runtime is not None:
            built[name] = runtime
    return reports, built


class _Graphs:
    """The variant's ONNX graph, read from the cache or exported at most once, shared by the ONNX runtimes."""

    def __init__(
        self, module: nn.Module, input_shape: tuple[int, int, int], cache: GraphCache | None, key: str | None
    ) -> None:
        self.module, self.input_shape = module, input_shape
        self.cache = cache if key is not None else None
        self.key = key or ""
        self._exported: bytes | None = None
        self._export_error: Exception | None = None

    def get(self) -> tuple[bytes, Literal["exported", "cache"]]:
        """The graph, from the cache when it holds a whole one, else exported."""
        if self._exported is None and self.cache is not None:
            cached = self.cache.read(self.key)
            if cached is not None:
                return cached, "cache"
        return self.export(), "exported"

    def export(self) -> bytes:
        """The graph exported from the module (once; later calls return the same bytes), written to the cache."""
        if self._export_error is not None:
            raise self._export_error
        if self._exported is None:
            try:
                self._exported = export_onnx(self.module, self.input_shape)
            except (GraphRefused, RuntimeUnavailable) as exc:
                self._export_error = exc
                raise
            if self.cache is not None:
                self.cache.write(self.key, self._exported, input_shape=list(self.input_shape))
        return self._exported

    def evict(self) -> None:
        if self.cache is not None:
            self.cache.evict(self.key)


def _build_verified(
    name: str,
    module: nn.Module,
    graphs: _Graphs,
    inputs: torch.Tensor,
    reference: torch.Tensor,
    options: SelectionOptions,
) -> tuple[CandidateReport, Runtime | None]:
    """Build candidate ``name`` and verify it; a cached graph that fails is exported again, once."""
    report = CandidateReport(name)
    started = time.perf_counter()
    runtime: Runtime | None = None
    try:
        if name == EagerRuntime.name:
            runtime = EagerRuntime(module, options.device)
            report.errors = _verify(runtime, inputs, reference)
        else:
            graph, report.graph = graphs.get()
            runtime = _build_onnx(name, graph, options)
            report.errors = _verify(runtime, inputs, reference)
            if report.graph == "cache" and not _passes(report.errors, options.tolerance):
                logger.warning("%s on the cached graph misses the tolerance; exporting again", name)
                runtime.close()
                runtime = None
                graphs.evict()
                runtime, report.graph = _build_onnx(name, graphs.export(), options), "exported"
                report.errors = _verify(runtime, inputs, reference)
    except RuntimeUnavailable as exc:
        report.status, report.reason = "unavailable", str(exc)
    except GraphRefused as exc:
        report.reason = str(exc)
    except Exception as exc:  # a runtime that cannot read the graph or run it: reported, never served
        logger.warning("runtime %s failed: %s: %s", name, type(exc).__name__, exc)
        report.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    report.build_seconds = time.perf_counter() - started
    if report.reason is None and report.errors is not None and not _passes(report.errors, options.tolerance):
        report.reason = (
            f"misses the tolerance: max error {report.errors['max_rel_error']:.3g} of the output scale > "
            f"{options.tolerance:g} on {report.errors['num_inputs']} inputs"
        )
    if report.reason is not None:
        if runtime is not None:
            runtime.close()
        return report, None
    report.status = "passed"
    return report, runtime


def _build_onnx(name: str, graph: bytes, options: SelectionOptions) -> Runtime:
    kind = RUNTIMES[name]
    assert kind is not EagerRuntime
    return kind(graph, threads=options.threads, device=options.device)  # type: ignore[call-arg]


def _passes(errors: dict[str, Any], tolerance: float) -> bool:
    return bool(errors["max_rel_error"] <= tolerance)  # False for NaN


def served(runtime: Runtime) -> Callable[[torch.Tensor], torch.Tensor]:
    """``runtime`` as the batcher calls it: a CPU batch in, CPU logits out (copies to and from its device counted)."""
    return lambda batch: runtime(batch.to(runtime.device, non_blocking=True)).cpu()


def _verify(runtime: Runtime, inputs: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    """:func:`~app.simplify.verify.error_stats` of ``runtime``'s outputs for ``inputs`` against ``reference``."""
    chunk = max(1, COMPARE_CHUNK_VALUES // max(1, inputs[0].numel()))
    call = served(runtime)
    with torch.inference_mode():
        outputs = torch.cat([call(part.float().contiguous()).double() for part in inputs.split(chunk)])
    return error_stats(reference, outputs)


def _choose(
    built: dict[str, Runtime], reports: dict[str, CandidateReport], example: torch.Tensor, options: SelectionOptions
) -> tuple[dict[str, int], int, dict[int, float]]:
    """Time every candidate at batch 1, 2, 4, ... up to ``options.max_batch_size`` (timings go into ``reports``); the
    largest batch is the smallest whose images/s come within :data:`BATCH_GAIN` of the best size's.

    Judging on the best size, not on the first doubling that did not pay, keeps a burst of other work on the machine
    (which only ever makes a measurement slower) from stopping the batch at 1.

    Returns:
        The runtimes to serve, each with the smallest batch it takes (one, or the batch-1 winner and the winner at
        the largest batch where that one is :data:`SPLIT_GAIN` faster there), the largest batch, and the served
        images/s per batch size.
    """
    fastest: dict[int, str] = {}
    timed = dict(built)
    for size in [1, *_doublings(options.max_batch_size)]:
        at_size = _time(timed, size, example, options, rounds=None if size == 1 else CURVE_ROUNDS)
        for name, took in at_size.items():
            reports[name].latency_s[size] = took
        fastest[size] = min(at_size, key=at_size.__getitem__)  # dicts keep the candidates' order: ties go to the first
        best = at_size[fastest[size]]
        timed = {name: timed[name] for name, took in at_size.items() if took <= DROP_RATIO * best}
    rates = {size: _rate(reports[name], size) for size, name in fastest.items()}
    largest = max(rates)
    if options.measure_batch:
        largest = min(size for size, rate in rates.items() if rate * BATCH_GAIN >= max(rates.values()))
    fastest = {size: name for size, name in fastest.items() if size <= largest}
    small, large = reports[fastest[1]], reports[fastest[largest]]
    parts = {small.runtime: 1}
    same_device = built[small.runtime].device == built[large.runtime].device
    if (
        small is not large
        and same_device
        and small.latency_s.get(largest, math.inf) >= SPLIT_GAIN * large.latency_s[largest]
    ):
        split = min(size for size in fastest if large.latency_s[size] <= small.latency_s.get(size, math.inf))
        parts[large.runtime] = split
    curve = {size: _rate(reports[part_for(parts, size)], size) for size in fastest}
    return parts, largest, curve


def _rate(report: CandidateReport, size: int) -> float:
    return size / report.latency_s[size]


def part_for(parts: dict[str, int], size: int) -> str:
    """The runtime of ``parts`` that takes a batch of ``size``: the one with the largest start at or below it."""
    return max((start, name) for name, start in parts.items() if start <= size)[1]


def _doublings(cap: int) -> list[int]:
    """2, 4, 8, ... below ``cap``, then ``cap`` itself (empty for a cap of 1)."""
    sizes = [1 << i for i in range(1, cap.bit_length()) if 1 << i < cap]
    return [*sizes, cap] if cap > 1 else []


def _time(
    built: dict[str, Runtime],
    size: int,
    example: torch.Tensor,
    options: SelectionOptions,
    *,
    rounds: int | None = None,
) -> dict[str, float]:
    """Seconds per call of each runtime on a batch of ``size`` copies of ``example`` in its fastest round, all in the
    same interleaved rounds (``options.rounds`` unless given)."""
    batch = example.float().expand(size, *example.shape[1:]).contiguous()
    timings = compare_forward(
        {name: served(runtime) for name, runtime in built.items()},
        batch,
        warmup=1,
        rounds=rounds or options.rounds,
        block_seconds=options.block_seconds,
    )
    # the fastest round, not the median: other work on the machine only ever adds time, and it comes in bursts that a
    # few rounds' median does not outvote (measured with two busy processes on two cores: medians put the fastest
    # batch size at 1 as often as at 16)
    return {name: float(timing["min_s"]) for name, timing in timings.items()}


def _close(runtimes: Any) -> None:
    for runtime in list(runtimes):
        runtime.close()
