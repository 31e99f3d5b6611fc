"""``python -m app anneal``: standard skips fine-tuned until every skip weight is 0, then served stripped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from app.__main__ import main
from app.nets import ResNetConfig, skip_weights
from app.serving import create_app
from app.serving.loading import load_model
from app.store import InputSpec, load_checkpoint, read_manifest, save_checkpoint
from app.training.folders import LabelledImages, load_labelled_images
from app.training.loop import TrainConfig, accuracy, train
from tests.serving.conftest import fast_settings, wait_until_loaded
from tests.training.shapes import SHAPES, SIDE, shape_folder

SPEC = InputSpec(channels=3, height=SIDE, width=SIDE, mean=[0.2] * 3, std=[0.3] * 3)
ANNEAL = ["--epochs", "5", "--batch-size", "32", "--lr", "0.01", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 PNGs of three shapes: ``train/`` 60 per class, ``val/`` 20 per class."""
    return shape_folder(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def images(shapes: Path) -> LabelledImages:
    return load_labelled_images(str(shapes), SPEC, list(SHAPES))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, images: LabelledImages) -> Path:
    """A store holding ``shapes``: a width-4 ResNet-18 with standard skips trained a little on the shapes."""
    torch.set_num_threads(1)
    architecture = ResNetConfig(depth=18, width=4, in_channels=3, num_classes=len(SHAPES))
    recipe = TrainConfig(architecture=architecture, epochs=6, batch_size=32, optimizer="adamw", lr=5e-3)
    trained = train(recipe, images, device="cpu", progress=False, verbose=False)
    root = tmp_path_factory.mktemp("store")
    save_checkpoint(root / "shapes", trained.model, name="shapes", input=SPEC, labels=list(SHAPES))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def annealed(store: Path, shapes: Path, report: Path) -> Path:
    out = store / "shapes-annealed"
    args = ["anneal", str(store / "shapes"), "--data", str(shapes), "--out", str(out), *ANNEAL, "--report", str(report)]
    assert main(args) == 0
    return out


@pytest.mark.slow  # shares the module's fine-tuning run (about 7 s)
def test_every_skip_weight_ends_at_exactly_zero(annealed: Path) -> None:
    manifest, model = load_checkpoint(annealed)
    assert manifest.architecture.skips == "annealed" and manifest.architecture.width == 4
    assert skip_weights(model) == [0.0] * 8  # a ResNet-18 has 8 blocks, each with a skip
    assert manifest.labels == list(SHAPES) and manifest.input == SPEC


@pytest.mark.slow  # shares the module's fine-tuning run (about 7 s)
def test_manifest_records_source_data_schedule_and_accuracy(
    annealed: Path, store: Path, shapes: Path, images: LabelledImages
) -> None:
    training = read_manifest(annealed).training
    assert training is not None
    source_manifest, source = load_checkpoint(store / "shapes")
    extra = training.extra
    assert extra["annealed_from"] == {"name": "shapes", "version": "1", "sha256": source_manifest.weights.sha256}
    assert extra["accuracy_before"] == accuracy(source, images.test_images, images.test_labels)[1]
    _, model = load_checkpoint(annealed)
    after = accuracy(model, images.test_images, images.test_labels)[1]
    assert training.test_accuracy == extra["accuracy_after"] == after
    assert after >= 0.8, f"annealed validation accuracy {after}"  # three classes: chance is 1/3
    assert training.skip_schedule == {"kind": "linear", "t0": 0.5, "unit": "fraction", "t0_epochs": 2.5}
    assert extra["image_folder"] == {"path": str(shapes), "val_fraction": None, "seed": 0}
    assert (training.epochs, extra["seed"]) == (5, 0)
    assert (extra["train_size"], extra["val_size"]) == (180, 60)
    assert extra["distill"] == {"weight": 1.0, "temperature": 2.0}
    assert training.command.startswith(f"python -m app anneal {store / 'shapes'} --data ")
    assert "--schedule linear --t0 0.5 --t0-unit fraction --epochs 5" in training.command
    assert len(json.loads((annealed / "history.json").read_text())) == 5


@pytest.mark.slow  # shares the module's fine-tuning run (about 7 s)
def test_the_load_pipeline_strips_every_skip_and_verifies(annealed: Path, store: Path) -> None:
    loaded = load_model(annealed, fast_settings(store, runtimes="eager"), torch.device("cpu"))
    report = loaded.report
    assert report["kind"] == "skips-stripped" and report["kept_skips"] == {}
    assert report["macs_after"] < report["macs_before"] and report["params_after"] < report["params_before"]
    assert report["max_rel_error"] < 1e-5 and report["top1_agreement"] == 1.0
    assert loaded.samples.startswith("6 images shipped")  # two validation images per class


@pytest.mark.slow  # shares the module's fine-tuning run (about 7 s)
def test_the_served_answers_are_the_annealed_network_s(annealed: Path, store: Path, shapes: Path) -> None:
    files = sorted((shapes / "val" / "circle").glob("*.png"))[:2] + sorted((shapes / "val" / "cross").glob("*.png"))[:2]
    _, model = load_checkpoint(annealed)
    with torch.inference_mode():
        expected = torch.softmax(model(load_batch(files)).double(), 1)
    with TestClient(create_app(fast_settings(store, runtimes="eager"), registry=CollectorRegistry())) as client:
        body = wait_until_loaded(client)
        assert {m["name"]: m["status"] for m in body["models"]}["shapes-annealed"] == "ready"
        parts = [("file", (f.name, f.read_bytes(), "image/png")) for f in files]
        answer = client.post("/predict?model=shapes-annealed&top_k=3", files=parts).json()
    assert answer["simplification"] == "skips-stripped" and answer["variant"] == "collapsed"
    for prediction, row in zip(answer["predictions"], expected, strict=True):
        got = torch.zeros(3, dtype=torch.float64)
        for entry in prediction["top_k"]:
            got[entry["index"]] = entry["probability"]
        assert prediction["index"] == int(row.argmax())
        torch.testing.assert_close(got, row, atol=1e-5, rtol=0)


def load_batch(files: list[Path]) -> torch.Tensor:
    from app.serving.images import decode_images

    return decode_images([f.read_bytes() for f in files], SPEC, max_pixels=1 << 20)


@pytest.mark.slow  # shares the module's fine-tuning run (about 7 s)
def test_report_compares_source_annealed_and_stripped(annealed: Path, report: Path) -> None:
    measured = json.loads((report / "anneal.json").read_text())
    rows = measured["networks"]
    assert list(rows) == ["source", "source, batch norm folded (as served)", "annealed", "stripped (as served)"]
    assert rows["stripped (as served)"]["accuracy"] == rows["annealed"]["accuracy"]
    assert rows["source"]["accuracy"] == read_manifest(annealed).training.extra["accuracy_before"]  # type: ignore[union-attr]
    assert rows["stripped (as served)"]["macs"] < rows["annealed"]["macs"] == rows["source"]["macs"]
    assert all(row["median_ms"]["1"] > 0 and row["median_ms"]["16"] > 0 for row in rows.values())
    text = (report / "anneal.md").read_text()
    assert "| stripped (as served) |" in text and "![validation accuracy" in text
    assert (report / "anneal.png").read_bytes().startswith(b"\x89PNG")
