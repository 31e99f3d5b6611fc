from pathlib import Path

import pytest
import torch
import torchvision

import app.importers.torchvision as tv
from app.importers import ImportRefused
from app.nets import ResNet
from tests.importers.support import NUM_CLASSES


@pytest.mark.parametrize("arch", list(tv.ARCHS))
def test_layout_is_torchvisions_key_for_key_and_shape_for_shape(arch):
    with torch.device("meta"):
        theirs = torchvision.models.get_model(arch, weights=None, num_classes=1000).state_dict()
    ours = tv.expected_layout(tv.config_for(arch, 1000))
    assert sorted(ours) == sorted(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ("conv1.weight", "stem.0.weight"),
        ("bn1.running_var", "stem.1.running_var"),
        ("layer2.0.downsample.0.weight", "layer2.0.shortcut.0.weight"),
        ("layer2.0.downsample.1.bias", "layer2.0.shortcut.1.bias"),
        ("layer3.4.conv1.weight", "layer3.4.conv1.weight"),  # a block's conv1/bn1 keep their names
        ("layer3.4.bn1.weight", "layer3.4.bn1.weight"),
        ("fc.bias", "fc.bias"),
    ],
)
def test_key_mapping_both_ways(theirs, ours):
    assert tv.to_foldserve_key(theirs) == ours
    assert tv.to_torchvision_key(ours) == theirs


@pytest.mark.parametrize(
    ("source", "arch", "expected"),
    [
        ("torchvision", "resnet50", "resnet50"),
        ("timm", "resnet50", "resnet50"),
        ("timm", "resnet50.a1_in1k", "resnet50"),
    ],
)
def test_resolve_arch(source, arch, expected):
    assert tv.resolve_arch(source, arch) == expected


@pytest.mark.parametrize(
    ("source", "arch", "message"),
    [
        ("torchvision", "resnet50.a1_in1k", "got 'resnet50.a1_in1k'"),  # tags are timm's
        ("timm", "resnet50d", "got 'resnet50d'"),  # timm's deep-stem variants have other tensors
        ("torchvision", "wide_resnet101_2", "grouped or wider 3x3 convolutions"),
        ("keras", "resnet50", "source must be one of torchvision, timm, got 'keras'"),
    ],
)
def test_resolve_arch_refuses(source, arch, message):
    with pytest.raises(ImportRefused, match=message):
        tv.resolve_arch(source, arch)


def test_float64_check_catches_a_wrong_mapping(monkeypatch, out, run_import, resnet18, tmp_path: Path, capsys):
    """Swap two batch norms of the same shape: every key and shape still fits, only the check can tell."""
    swap = {"layer1.0.bn1.": "layer1.0.bn2.", "layer1.0.bn2.": "layer1.0.bn1."}
    real = tv.to_foldserve_key

    def swapped(key: str) -> str:
        mapped = real(key)
        prefix = next((p for p in swap if mapped.startswith(p)), None)
        return swap[prefix] + mapped[len(prefix) :] if prefix else mapped

    monkeypatch.setattr(tv, "to_foldserve_key", swapped)
    torch.save(resnet18.state_dict(), tmp_path / "w.pth")
    assert run_import(tmp_path / "w.pth") == 2
    err = capsys.readouterr().err
    assert "foldserve's resnet18 differs from torchvision's with the same weights" in err and "nothing written" in err
    assert not out.exists()


def test_check_reports_exact_agreement(resnet18):
    state = {k: v.clone() for k, v in resnet18.state_dict().items()}
    model, full = tv.build_model(state, tv.config_for("resnet18", NUM_CLASSES))
    assert isinstance(model, ResNet) and not model.training
    report = tv.check_against_torchvision("resnet18", model, full)
    assert report["max_rel_error"] <= tv.CHECK_TOLERANCE and report["top1_agreement"] == 1.0
    assert report["input_shape"] == [2, 3, *tv.CHECK_SIZE]


def test_nothing_below_imports_the_importers():
    root = Path(__file__).resolve().parents[2] / "app"
    for package in ("nets", "store", "simplify"):
        for path in (root / package).rglob("*.py"):
            assert "app.importers" not in path.read_text(encoding="utf-8"), path
