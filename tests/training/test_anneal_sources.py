"""Annealing the sources the issue names: an imported torchvision ResNet-18, and a shipped model on mnist-sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.__main__ import main
from app.nets import skip_weights
from app.serving.loading import load_model
from app.store import load_checkpoint
from app.training import evaluate
from app.training.data import DataSpec, load_digits
from app.training.folders import MNIST_SAMPLE, load_labelled_images
from app.training.loop import accuracy
from tests.importers.support import IMAGENET, save_pt, torchvision_resnet
from tests.serving.conftest import fast_settings
from tests.training.shapes import SHAPES, shape_folder

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_imported_torchvision_resnet18_anneals_and_strips(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = shape_folder(tmp_path / "data", train=6, val=2)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(SHAPES) + "\n", encoding="utf-8")
    weights = save_pt(tmp_path / "resnet18.pth", torchvision_resnet("resnet18", num_classes=len(SHAPES)).state_dict())
    store = tmp_path / "store"
    imported = [
        "import",
        "torchvision",
        "resnet18",
        str(weights),
        "--out",
        str(store / "tv18"),
        "--labels",
        str(labels),
    ]
    assert main([*imported, "--input", "3x32x32", *IMAGENET, "--resize", "36", "--crop", "center"]) == 0
    anneal = ["anneal", str(store / "tv18"), "--data", str(data), "--out", str(store / "tv18-annealed")]
    assert main([*anneal, "--epochs", "1", "--batch-size", "9", "--threads", "1", "--no-progress"]) == 0  # 2 steps
    manifest, model = load_checkpoint(store / "tv18-annealed")
    assert manifest.architecture.skips == "annealed" and manifest.architecture.stem == "imagenet"
    assert skip_weights(model) == [0.0] * 8
    assert (manifest.input.resize, manifest.input.crop) == (36, "center")  # the source's preprocessing, kept
    assert manifest.training is not None and manifest.training.extra["annealed_from"]["name"] == "tv18"
    report = load_model(store / "tv18-annealed", fast_settings(store, runtimes="eager"), torch.device("cpu")).report
    assert report["kind"] == "skips-stripped" and report["kept_skips"] == {}
    # the three 1x1 projection convs go with the skips: at 32x32 in, layer2/3/4 start at 4x4, 2x2, 1x1, and each
    # projection costs out_channels x H x W x in_channels = 128*16*64 = 256*4*128 = 512*1*256 = 131,072 MACs
    assert report["macs_before"] - report["macs_after"] == 3 * 131_072
    assert report["max_rel_error"] < 1e-5 and report["top1_agreement"] == 1.0


def test_mnist_sample_is_the_shipped_models_test_split() -> None:
    torch.set_num_threads(1)
    manifest, model = load_checkpoint(ROOT / "model_store" / "resnet18-mnist")
    data = load_labelled_images(MNIST_SAMPLE, manifest.input, manifest.labels)
    assert (len(data.train_labels), len(data.test_labels)) == (4000, 1000)
    images, labels = evaluate.test_set_of(manifest, load_digits(DataSpec(source="sample")))
    assert torch.equal(data.test_labels, labels)
    torch.testing.assert_close(data.test_images, images, atol=1e-5, rtol=0)
    assert manifest.training is not None
    assert accuracy(model, data.test_images, data.test_labels)[1] == manifest.training.test_accuracy
