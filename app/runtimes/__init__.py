"""Runtimes: a verified ``nn.Module`` made into the fastest exact callable this machine has.

A runtime (:class:`Runtime`) runs ``[N, C, H, W] float32 -> [N, K] float32`` on whole batches: ``eager`` (the module
in PyTorch), ``onnxruntime`` (an exported ONNX graph on ONNX Runtime's CPU execution provider, CUDA's with
``onnxruntime-gpu`` on a GPU) and ``openvino`` (the same graph on OpenVINO's CPU plugin). The ONNX runtimes are the
package's optional extras ``foldserve[onnx]`` and ``foldserve[openvino]``; a runtime whose package is missing is
reported ``unavailable`` and eager serves. :func:`select_runtime` builds every candidate, verifies each in float64
against the original network, times them, and returns the fastest that passed with its largest useful batch.
No HTTP here, and nothing imports serving.
"""

from __future__ import annotations

from app.runtimes.base import Runtime, RuntimeUnavailable
from app.runtimes.cache import GraphCache, cache_key, graph_key
from app.runtimes.eager import EagerRuntime
from app.runtimes.onnx_graph import GraphRefused, check_graph, export_onnx, exporter_version
from app.runtimes.select import (
    BATCH_GAIN,
    RUNTIMES,
    CandidateReport,
    NoRuntimePassed,
    SelectionOptions,
    VariantRuntime,
    build_candidates,
    select_runtime,
    served,
)

__all__ = [
    "BATCH_GAIN",
    "RUNTIMES",
    "CandidateReport",
    "EagerRuntime",
    "GraphCache",
    "GraphRefused",
    "NoRuntimePassed",
    "Runtime",
    "RuntimeUnavailable",
    "SelectionOptions",
    "VariantRuntime",
    "build_candidates",
    "cache_key",
    "check_graph",
    "export_onnx",
    "exporter_version",
    "graph_key",
    "select_runtime",
    "served",
]
