"""Eager PyTorch: the verified module itself, as foldserve has always served it."""

from __future__ import annotations

import torch
from torch import nn

from app.runtimes.base import Runtime

__all__ = ["EagerRuntime"]


class EagerRuntime(Runtime):
    """``module`` called under ``torch.inference_mode()`` on ``device``, at torch's own thread count."""

    name = "eager"

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module.to(device).eval()
        self.device = device
        self.threads = torch.get_num_threads()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(batch)
