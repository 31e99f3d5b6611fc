"""What every runtime is: a network ready to run, ``[N, C, H, W] float32 -> [N, K] float32``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

__all__ = ["Runtime", "RuntimeUnavailable"]


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot be built here: its package is not installed, or it does not run on this device."""


class Runtime(ABC):
    """A verified network, built for one runtime.

    Calls take whole batches on :attr:`device` and return float32 logits; a runtime is called from one thread at a
    time (the batcher's worker thread, or the event loop when the batcher is idle). ONNX Runtime and OpenVINO
    release the GIL while they run.
    """

    name: ClassVar[str]
    """How ``FOLDSERVE_RUNTIMES``, ``/models`` and the metrics name it."""

    device: torch.device
    """Where its inputs go: the batcher copies a batch there (and, on CUDA, pads it to a power of two)."""

    threads: int
    """Intra-op threads it runs with."""

    keeps_each_shape: ClassVar[bool] = False
    """Whether it prepares code and memory for each batch size the first time it runs it, and keeps them: the loader
    then runs every size it will take (:meth:`sizes_to_prepare`) before serving, so that no client pays for a size's
    first pass and the memory stops growing at load instead of whenever load brings a larger batch."""

    def sizes_to_prepare(self, max_batch_size: int) -> set[int]:
        """The batch sizes up to ``max_batch_size`` to run once before serving: every one where
        :attr:`keeps_each_shape`, else none."""
        return set(range(1, max_batch_size + 1)) if self.keeps_each_shape else set()

    @abstractmethod
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """The logits of ``batch`` (``[N, C, H, W]`` float32, contiguous, on :attr:`device`): ``[N, K]`` float32."""

    def close(self) -> None:  # noqa: B027 (a no-op unless the runtime holds something to release)
        """Release what it holds (sessions, compiled models); it is not called again after this."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, threads={self.threads})"
