"""``anneal`` refuses bad input with one line naming the problem, and never leaves anything behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from app.__main__ import main
from app.nets import set_skip_weight, skip_weights
from app.store import load_checkpoint, read_manifest
from app.training import anneal as anneal_module
from app.training.anneal import Annealed, anneal, write_annealed
from app.training.folders import LabelledImages, load_labelled_images
from app.training.loop import TrainConfig
from app.training.schedules import SkipSchedule
from tests.training.shapes import shape_checkpoint, shape_folder

QUICK = ["--epochs", "1", "--batch-size", "8", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes folder: 6 train and 2 validation images per class."""
    return shape_folder(tmp_path_factory.mktemp("shapes"), train=6, val=2)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shape_checkpoint(root, "shapes")
    return root


def run(capsys: pytest.CaptureFixture[str], store: Path, *args: str, source: str = "shapes") -> tuple[int, str]:
    """Run ``anneal`` into ``store/out``; returns its exit code and stderr, checking nothing new is in the store."""
    before = sorted(p.name for p in store.iterdir())
    code = main(["anneal", str(store / source), "--out", str(store / "out"), *QUICK, *args])
    err = capsys.readouterr().err
    if code != 0:
        assert sorted(p.name for p in store.iterdir()) == before, "a refused run left something in the store"
    return code, err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"skips": "none"}, "bad is already a plain CNN (skips='none'): it has no skips to anneal"),
        ({"activation": "identity"}, "bad is a linear ResNet: it already collapses to one affine map at load"),
        ({"skips": "annealed"}, "bad already has annealed skips (skips='annealed')"),
    ],
)
def test_sources_without_skips_to_anneal_are_refused(capsys, store, folder, overrides, message) -> None:
    shape_checkpoint(store, "bad", **overrides)
    code, err = run(capsys, store, "--data", str(folder), source="bad")
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


def test_class_folders_must_match_the_labels(capsys, store, tmp_path) -> None:
    data = shape_folder(tmp_path / "data", train=2, val=1)
    for part in ("train", "val"):
        (data / part / "square").rename(data / part / "triangle")
    code, err = run(capsys, store, "--data", str(data))
    assert code == 2
    assert err == (
        f"error: --data {data / 'train'}: class folders do not match the model's labels; not among the model's "
        "labels: 'triangle'; missing, for the model's labels: 'square'\n"
    )


def test_an_image_that_does_not_decode_is_named(capsys, store, tmp_path) -> None:
    data = shape_folder(tmp_path / "data", train=2, val=1)
    bad = data / "train" / "cross" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    code, err = run(capsys, store, "--data", str(data))
    assert code == 2 and err.startswith(f"error: {bad}: ") and err.count("\n") == 1


def test_an_empty_split_is_refused(capsys, store, tmp_path) -> None:
    data = shape_folder(tmp_path / "data", train=2, val=1)
    for image in (data / "val").rglob("*.png"):
        image.unlink()
    code, err = run(capsys, store, "--data", str(data))
    assert (code, err) == (2, f"error: --data {data}: the validation split has no images\n")


def test_a_folder_without_train_and_val_needs_a_fraction(capsys, store, tmp_path) -> None:
    data = shape_folder(tmp_path / "data", train=4, val=1, split=False)
    code, err = run(capsys, store, "--data", str(data))
    assert (code, err) == (2, f"error: --data {data} has no train/ and val/ folders: give --val-fraction to split it\n")


def test_an_existing_out_is_refused_without_force(capsys, store, folder) -> None:
    (store / "out").mkdir()
    code, err = run(capsys, store, "--data", str(folder))
    assert (code, err) == (2, f"error: --out {store / 'out'} already exists; give --force to replace it\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--t0", "3", "--t0-unit", "epochs"], "t0 = 3.0 epochs is after the end of a 1-epoch run"),
        (["--name", "Not_A_Name"], "model name 'Not_A_Name' is not valid"),
        (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
        (["--val-fraction", "0.5"], "has train/ and val/ folders; --val-fraction is for a folder without them"),
    ],
)
def test_bad_options_are_refused(capsys, store, folder, args, message) -> None:
    code, err = run(capsys, store, "--data", str(folder), *args)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_mnist_sample_needs_digit_labels(capsys, store) -> None:
    code, err = run(capsys, store, "--data", "mnist-sample")
    assert code == 2
    assert err == (
        "error: mnist-sample has the classes '0', '1', '2', '3', '4' … (10 in all); the model's labels are "
        "'circle', 'cross', 'square'\n"
    )


def test_force_replaces_and_a_fraction_splits_one_folder(capsys, store, tmp_path) -> None:
    data = shape_folder(tmp_path / "data", train=8, val=2, split=False)  # 30 images
    (store / "out").mkdir()
    (store / "out" / "old-file").write_text("old")
    code, _ = run(capsys, store, "--data", str(data), "--val-fraction", "0.2", "--force")
    assert code == 0
    assert sorted(p.name for p in store.iterdir()) == ["out", "shapes"]  # nothing else left behind
    assert not (store / "out" / "old-file").exists()
    manifest, model = load_checkpoint(store / "out")
    assert skip_weights(model) == [0.0] * 8
    assert manifest.training is not None and (
        manifest.training.extra["train_size"],
        manifest.training.extra["val_size"],
    ) == (24, 6)


@pytest.fixture
def annealed(store: Path, folder: Path) -> tuple[Annealed, LabelledImages]:
    """One epoch of annealing, done in-process: what ``write_annealed`` is given."""
    torch.set_num_threads(1)
    manifest = read_manifest(store / "shapes")
    data = load_labelled_images(str(folder), manifest.input, manifest.labels)
    architecture = replace(manifest.architecture.to_config(), skips="annealed")
    config = TrainConfig(architecture=architecture, epochs=1, batch_size=8, schedule=SkipSchedule())
    return anneal(store / "shapes", data, config, progress=False), data


def test_a_skip_weight_not_exactly_zero_is_never_written(store, annealed) -> None:
    result, data = annealed
    set_skip_weight(result.result.model, 1e-12)
    with pytest.raises(RuntimeError, match=r"^refusing to write: 8 of 8 skip weights are not exactly 0 \(1e-12\)$"):
        write_annealed(store / "out", "out", result, data, "cmd")
    assert sorted(p.name for p in store.iterdir()) == ["shapes"]


def test_a_failure_while_writing_leaves_nothing(store, annealed, monkeypatch) -> None:
    def fail(directory: Path) -> dict[str, object]:
        assert (directory / "manifest.json").is_file()  # it fails once everything is written
        raise OSError("disk full")

    monkeypatch.setattr(anneal_module, "_check_strips", fail)
    with pytest.raises(OSError, match="disk full"):
        write_annealed(store / "out", "out", *annealed, "cmd")
    assert sorted(p.name for p in store.iterdir()) == ["shapes"]
