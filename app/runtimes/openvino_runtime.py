"""OpenVINO: an exported graph compiled for the CPU plugin, in float32."""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import torch

from app.runtimes.base import Runtime, RuntimeUnavailable

__all__ = ["OpenVinoRuntime"]


def _ov() -> Any:
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailable("openvino is not installed (pip install 'foldserve[openvino]')") from None
    return openvino


@functools.cache
def _core() -> Any:
    return _ov().Core()


class OpenVinoRuntime(Runtime):
    """``graph`` compiled for OpenVINO's CPU plugin with ``threads`` inference threads and one stream.

    The precision hint is float32: on CPUs with bfloat16 or float16 units the plugin would otherwise compute in
    those, which misses the verification tolerance by orders of magnitude. Threads are not pinned to cores,
    since the worker processes of one host share them.

    The plugin builds and keeps kernels and buffers for each batch size the first time it runs it (1.6 MiB a size
    for the shipped MNIST ResNet-18, 7 MiB for an ImageNet ResNet-18, measured as the process's private memory):
    it :attr:`keeps_each_shape`.
    """

    name = "openvino"
    keeps_each_shape = True

    def __init__(self, graph: bytes, *, threads: int, device: torch.device) -> None:
        ov = _ov()
        if device.type != "cpu":
            raise RuntimeUnavailable(f"foldserve runs OpenVINO on the CPU only, not on {device.type}")
        props = ov.properties
        config = {
            props.inference_num_threads: threads,
            props.num_streams: 1,
            props.hint.performance_mode: props.hint.PerformanceMode.LATENCY,
            props.hint.inference_precision: ov.Type.f32,
            props.hint.enable_cpu_pinning: False,
        }
        model = _core().read_model(graph, ov.Tensor(np.empty(0, dtype=np.uint8)))
        self.compiled = _core().compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request, which is not safe to share between threads
        self.device = device
        self.threads = threads

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        with self._lock:
            logits = self.request.infer({0: array})[0]
        return torch.from_numpy(np.array(logits, dtype=np.float32, copy=True))

    def close(self) -> None:
        del self.request, self.compiled
