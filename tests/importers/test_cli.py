import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from app.simplify import simplify
from app.store import load_checkpoint
from tests.importers.support import IMAGENET, NUM_CLASSES, save_pt, torchvision_resnet


def _assert_same_logits(model, reference, shape=(3, 64, 64), count=4):
    x = torch.randn(count, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    scale = theirs.abs().max()
    print(f"max difference {float((ours - theirs).abs().max()):.3g} of output scale {float(scale):.3g}")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4 * float(scale))
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


@pytest.mark.parametrize(
    "arch", ["resnet18", *(pytest.param(arch, marks=pytest.mark.slow) for arch in ("resnet34", "resnet50"))]
)
def test_import_matches_torchvision_and_simplifies(arch, tmp_path, out, run_import):
    reference = torchvision_resnet(arch)
    weights = save_pt(tmp_path / f"{arch}.pth", reference.state_dict())
    assert run_import(weights, arch) == 0
    manifest, model = load_checkpoint(out)
    assert manifest.name == "model" and manifest.version == "1"
    assert manifest.architecture.depth == int(arch[6:]) and manifest.architecture.stem == "imagenet"
    assert manifest.labels == [f"class {i}" for i in range(NUM_CLASSES)]
    _assert_same_logits(model, reference)
    result = simplify(model, (3, 64, 64), num_random=4)
    assert result.report["kind"] == "batchnorm-folded" and result.report["max_rel_error"] < 1e-5


def test_manifest_records_the_import(tmp_path, out, run_import, resnet18):
    weights = save_pt(tmp_path / "r18.pth", resnet18.state_dict())
    extra = ["--resize", "72", "--crop", "center", "--name", "my-r18", "--version", "2"]
    assert run_import(weights, "resnet18", *extra) == 0
    manifest, _ = load_checkpoint(out)
    assert (manifest.name, manifest.version, manifest.input.resize, manifest.input.crop) == (
        "my-r18",
        "2",
        72,
        "center",
    )
    assert manifest.input.shape == (3, 64, 64) and manifest.input.mean == [0.485, 0.456, 0.406]
    imported = manifest.training.extra["imported"]
    assert imported["source"] == "torchvision" and imported["arch"] == "resnet18" and imported["file"] == "r18.pth"
    assert imported["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert imported["check"]["max_rel_error"] <= 1e-6 and imported["check"]["top1_agreement"] == 1.0
    command = manifest.training.command
    assert command.startswith("python -m app import torchvision resnet18 ") and "--resize 72 --crop center" in command


def test_wrapped_data_parallel_checkpoint_imports(tmp_path, out, run_import, resnet18):
    state = {f"module.{k}": v for k, v in resnet18.state_dict().items()}
    weights = save_pt(tmp_path / "ckpt.pt", {"state_dict": state, "epoch": 90, "best_acc1": 0.7})
    assert run_import(weights) == 0
    _assert_same_logits(load_checkpoint(out)[1], resnet18)


def test_timm_safetensors_without_batchnorm_counters_imports(tmp_path, out, run_import, resnet18):
    # timm's resnet18..152 name tensors like torchvision (only that layout is tested here: timm is not
    # installed); its files, like torchvision's oldest, often lack the num_batches_tracked counters
    state = {k: v for k, v in resnet18.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "model.safetensors"))
    assert run_import(tmp_path / "model.safetensors", "resnet18.a1_in1k", source="timm") == 0
    manifest, model = load_checkpoint(out)
    assert manifest.training.extra["imported"]["source"] == "timm"
    _assert_same_logits(model, resnet18)


def _refused(capsys, out, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("error: import refused: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists(), "nothing may be written when an import is refused"


def test_unknown_keys_are_named(tmp_path, capsys, out, run_import, state18):
    state18["layer1.0.se.fc.weight"] = torch.zeros(4, 64)
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    _refused(capsys, out, "1 keys that torchvision's resnet18 does not have: layer1.0.se.fc.weight")


def test_missing_keys_are_named(tmp_path, capsys, out, run_import, state18):
    del state18["layer4.1.bn2.running_var"]
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    _refused(capsys, out, "1 keys of torchvision's resnet18 missing: layer4.1.bn2.running_var")


def test_weights_of_another_depth_are_refused(tmp_path, capsys, out, run_import, state18):
    assert run_import(save_pt(tmp_path / "w.pth", state18), "resnet34") == 2
    _refused(capsys, out, "keys of torchvision's resnet34 missing: layer1.2.conv1.weight", "are these resnet34")


def test_wrong_shape_names_key_and_both_shapes(tmp_path, capsys, out, run_import, state18):
    state18["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    _refused(capsys, out, "conv1.weight has shape (64, 1, 7, 7)", "expects (64, 3, 7, 7)")


def test_non_finite_weights_are_refused(tmp_path, capsys, out, run_import, state18):
    state18["layer2.1.bn1.running_var"][7] = float("nan")
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    _refused(capsys, out, "layer2.1.bn1.running_var holds NaN or infinite values")


def test_num_classes_that_disagree_with_fc_are_refused(tmp_path, capsys, out, labels, run_import, state18):
    labels.write_text("".join(f"c{i}\n" for i in range(5)))
    assert run_import(save_pt(tmp_path / "w.pth", state18), "resnet18", "--num-classes", "5") == 2
    _refused(capsys, out, "fc.weight has shape (10, 512), torchvision's resnet18 with 5 classes expects (5, 512)")


@pytest.mark.parametrize("arch", ["resnext50_32x4d", "wide_resnet50_2"])
def test_resnext_and_wide_resnets_are_refused(tmp_path, capsys, out, run_import, state18, arch):
    assert run_import(save_pt(tmp_path / "w.pth", state18), arch) == 2
    _refused(capsys, out, "ARCH must be one of resnet18, resnet34, resnet50, resnet101, resnet152", "grouped or wider")


def test_unknown_arch_is_refused(tmp_path, capsys, out, run_import, state18):
    assert run_import(save_pt(tmp_path / "w.pth", state18), "vgg16") == 2
    _refused(capsys, out, "got 'vgg16'")


def test_file_that_is_not_a_state_dict_is_refused(tmp_path, capsys, out, run_import):
    assert run_import(save_pt(tmp_path / "w.pth", [1, 2, 3])) == 2
    _refused(capsys, out, "w.pth: holds a list, not a state_dict")


def test_file_that_is_not_a_torch_file_is_refused(tmp_path, capsys, out, run_import):
    (tmp_path / "w.pth").write_bytes(b"<html>not found</html>")
    assert run_import(tmp_path / "w.pth") == 2
    _refused(capsys, out, "w.pth: refused by torch.load(weights_only=True)", "Unsupported operand 60")


def test_other_suffix_is_refused(tmp_path, capsys, out, run_import, state18):
    assert run_import(save_pt(tmp_path / "w.ckpt", state18)) == 2
    _refused(capsys, out, "weights must be one of .pth, .pt, .safetensors files, got '.ckpt'")


class _Payload:
    """Unpickling this calls os.mkdir(path): the folder appears only if the pickle is executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, capsys, out, run_import, state18):
    control = save_pt(tmp_path / "control.pth", {"conv1.weight": _Payload(tmp_path / "control-ran")})
    torch.load(control, weights_only=False)  # the payload is live: plain unpickling runs it
    assert (tmp_path / "control-ran").is_dir()
    marker = tmp_path / "pwned"
    weights = save_pt(tmp_path / "evil.pth", {**state18, "conv1.weight": _Payload(marker)})
    assert run_import(weights) == 2
    _refused(capsys, out, "evil.pth: refused by torch.load(weights_only=True)", "the file needs posix.mkdir")
    assert not marker.exists()


def test_malicious_pickle_from_the_command_line_is_one_line_and_exit_2(tmp_path, labels):
    marker, out = tmp_path / "pwned", tmp_path / "out"
    weights = save_pt(tmp_path / "evil.pth", {"conv1.weight": _Payload(marker)})
    args = ["import", "torchvision", "resnet18", str(weights), "--out", str(out), "--labels", str(labels)]
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args, "--input", "3x64x64", *IMAGENET],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "refused" in proc.stderr and not marker.exists() and not out.exists()


def test_existing_output_folder_is_refused(tmp_path, capsys, out, run_import, state18):
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    err = capsys.readouterr().err
    assert "already exists and is not an empty folder" in err and err.count("\n") == 1
    assert json.loads((out / "manifest.json").read_text()) == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--crop", "center"], "input.resize and input.crop go together"),
        (["--resize", "60", "--crop", "center"], "input.resize must be >= max(height, width) = 64"),
        (["--name", "Bad Name"], "invalid manifest: name: String should match pattern"),
    ],
)
def test_invalid_manifest_options_are_refused(tmp_path, capsys, out, run_import, state18, extra, message):
    assert run_import(save_pt(tmp_path / "w.pth", state18), "resnet18", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_labels_must_match_the_classes(tmp_path, capsys, out, labels, run_import, state18):
    labels.write_text("cat\ndog\n")
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    _refused(capsys, out, "labels has 2 entries but architecture.num_classes is 10")


def test_duplicate_labels_are_refused(tmp_path, capsys, out, labels, run_import, state18):
    labels.write_text("cat\ndog\ncat\n")
    assert run_import(save_pt(tmp_path / "w.pth", state18)) == 2
    err = capsys.readouterr().err
    assert "label 'cat' appears more than once" in err and not out.exists()
