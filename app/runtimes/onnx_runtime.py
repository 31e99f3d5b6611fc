"""ONNX Runtime: an exported graph in an ``InferenceSession``, on the CPU execution provider (CUDA's where
``onnxruntime-gpu`` provides it and the service runs on CUDA)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from app.runtimes.base import Runtime, RuntimeUnavailable
from app.runtimes.onnx_graph import GRAPH_INPUT, GRAPH_OUTPUT

__all__ = ["OnnxRuntime"]


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeUnavailable("onnxruntime is not installed (pip install 'foldserve[onnx]')") from None
    return onnxruntime


class OnnxRuntime(Runtime):
    """A session over ``graph`` with ``threads`` intra-op threads, one inter-op thread, all graph optimisations.

    Its threads do not spin while waiting for work: they share the cores with the event loop and the decoders.
    Inputs stay on the CPU whatever the provider (the session copies them to its device).
    """

    name = "onnxruntime"

    def __init__(self, graph: bytes, *, threads: int, device: torch.device) -> None:
        ort = _ort()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeUnavailable("this onnxruntime has no CUDA execution provider (install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings about provider placement are not ours to act on
        self.session = ort.InferenceSession(graph, options, providers=providers)
        self.providers = self.session.get_providers()
        self.device = torch.device("cpu")
        self.threads = threads

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        (logits,) = self.session.run([GRAPH_OUTPUT], {GRAPH_INPUT: array})
        return torch.from_numpy(logits)

    def close(self) -> None:
        del self.session
