"""The training loop: seeded, with progress bars, per-epoch test accuracy and mixed precision on CUDA.

For a network with annealed skips the skip weight is set from the :class:`SkipSchedule` before every
optimisation step, and set to its end-of-run value (exactly 0) once training is over, so the saved
network's skips can be stripped. The same loop fine-tunes (``python -m app anneal``): it can start from a
given network instead of random weights and add a distillation term on a frozen teacher's logits.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from app.nets import ResNet, ResNetConfig, build_resnet, set_skip_weight
from app.training.distill import Distillation
from app.training.schedules import SkipSchedule

__all__ = [
    "LabelledSplit",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "augment",
    "resolve_device",
    "train",
]


class LabelledSplit(Protocol):
    """What the loop trains and tests on: normalised images ``[N, C, H, W]`` and int64 labels ``[N]``."""

    @property
    def train_images(self) -> torch.Tensor: ...
    @property
    def train_labels(self) -> torch.Tensor: ...
    @property
    def test_images(self) -> torch.Tensor: ...
    @property
    def test_labels(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe: the network, the optimiser and, for annealed skips, the skip schedule."""

    architecture: ResNetConfig
    epochs: int = 15
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05  # peak learning rate, reached after a one-epoch warm-up, then cosine decay to 0
    weight_decay: float = 5e-4
    augment: bool = True  # random shifts of up to 2 pixels and rotations of up to 10 degrees
    schedule: SkipSchedule | None = None  # required when architecture.skips is "annealed"
    seed: int = 0
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        annealed = self.architecture.skips == "annealed"
        if annealed and self.schedule is None:
            raise ValueError("an architecture with annealed skips needs a skip schedule")
        if not annealed and self.schedule is not None:
            raise ValueError("a skip schedule needs an architecture with skips='annealed'")
        if self.schedule is not None:
            self.schedule.t0_epochs(self.epochs)  # raises when t0 is after the end of the run


@dataclass
class TrainResult:
    """A trained network (eval mode, on the CPU) and how it got there."""

    model: ResNet
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    test_accuracy: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small rotations (up to 10 degrees) and shifts (up to 1/14 of a side: 2 px of a 28 px digit), one
    per image, by a single batched resampling. No flips: a mirrored digit is not a digit."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 / 14)  # 2 px in [-1, 1] coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    background = images.amin(dim=(1, 2, 3), keepdim=True)  # normalised black, so padding stays black
    return F.grid_sample(images - background, grid, align_corners=False) + background


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # batch norm and biases
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)


def _lr_at(config: TrainConfig, t: float) -> float:
    """One epoch of linear warm-up, then cosine decay to 0 at the end of the run (t in epochs)."""
    warmup = min(1.0, config.epochs / 10)
    if t < warmup:
        return config.lr * (t + 1e-3) / warmup
    return config.lr * 0.5 * (1 + math.cos(math.pi * (t - warmup) / max(config.epochs - warmup, 1e-9)))


@torch.no_grad()
def accuracy(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, top-1 accuracy and the predicted classes of ``model`` on ``images``."""
    losses, predictions = [], []
    for start in range(0, len(labels), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        logits = model(x).float()
        losses.append(F.cross_entropy(logits, y, reduction="sum"))
        predictions.append(logits.argmax(1).cpu())
    predicted = torch.cat(predictions)
    loss = float(torch.stack(losses).sum()) / len(labels)
    return loss, float((predicted == labels).float().mean()), predicted


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(
    config: TrainConfig,
    data: LabelledSplit,
    *,
    device: str = "auto",
    progress: bool = True,
    verbose: bool = True,
    init: ResNet | None = None,
    distill: Distillation | None = None,
) -> TrainResult:
    """Train a network on ``data`` as ``config`` says: from scratch, or from ``init``.

    ``progress`` shows a progress bar per epoch; ``verbose`` prints one summary line per epoch. ``init`` (its
    architecture must be ``config.architecture``) is copied, never modified; ``distill`` adds its term to the loss.

    Returns:
        The trained network in eval mode on the CPU, with its skip weights at their final value (0 for
        annealed skips), its per-epoch history and its final test accuracy.
    """
    dev = resolve_device(device)
    _seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = _initial_model(config.architecture, init).to(dev)
    if distill is not None:
        distill = Distillation(copy.deepcopy(distill.teacher).to(dev).eval(), distill.weight, distill.temperature)
    optimizer = _optimizer(config, model)
    train_x, train_y = data.train_images.to(dev), data.train_labels.to(dev)
    steps_per_epoch = math.ceil(len(train_y) / config.batch_size)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    test_acc = float("nan")
    for epoch in range(config.epochs):
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        weight = 1.0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for step, index in enumerate(_batches(len(train_y), config.batch_size, generator)):
            t = epoch + step / steps_per_epoch
            if config.schedule is not None:
                weight = config.schedule.weight(t, config.epochs)
                set_skip_weight(model, weight)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(config, t)
            index = index.to(dev)
            x, y = train_x[index], train_y[index]
            if config.augment:
                x = augment(x, generator)
            with _autocast(dev, config.amp):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
                if distill is not None:
                    loss = loss + distill.loss(logits.float(), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", skip=f"{weight:.3f}", test=f"{test_acc:.4f}")
            bar.update()
        bar.close()
        if config.schedule is not None:
            weight = config.schedule.weight(epoch + 1, config.epochs)  # the weight the next step would use
            set_skip_weight(model, weight)
        model.eval()
        with _autocast(dev, config.amp):
            test_loss, test_acc, _ = accuracy(model, data.test_images, data.test_labels, device=dev)
        row = {
            "epoch": epoch + 1,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "skip_weight": weight if config.schedule is not None else 1.0,
            "lr": _lr_at(config, epoch + 1 - 1e-9),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        if verbose:
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, "
                f"test loss {test_loss:.4f}, test accuracy {test_acc:.4f}, skip weight {row['skip_weight']:.3f}"
            )
    seconds = time.perf_counter() - started
    model = model.to("cpu").eval()
    _, test_acc, _ = accuracy(model, data.test_images, data.test_labels)  # float32 on the CPU, as served
    return TrainResult(model=model, history=history, test_accuracy=test_acc, seconds=seconds, device=_describe(dev))


def _initial_model(architecture: ResNetConfig, init: ResNet | None) -> ResNet:
    if init is None:
        return build_resnet(architecture)
    if init.config != architecture:
        raise ValueError(f"the starting network is {init.config}, the recipe asks for {architecture}")
    return copy.deepcopy(init).train()


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
