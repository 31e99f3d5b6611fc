import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.store import CheckpointError, InputSpec, discover_models, load_checkpoint, read_manifest
from tests.helpers import tiny_checkpoint, tiny_resnet


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tiny_checkpoint(tmp_path, name="tiny", skips="annealed")


def _rewrite_weights(folder: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace the weights and fix the manifest's sha256, so that only the tensors are wrong."""
    weights = folder / "weights.safetensors"
    save_file(state, str(weights))
    _set_manifest(folder, weights={"file": weights.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()})


def _set_manifest(folder: Path, **fields: object) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_round_trip_keeps_outputs_and_manifest(folder):
    manifest, model = load_checkpoint(folder)
    assert manifest.format == "foldserve/1" and manifest.name == "tiny"
    assert manifest.architecture.to_config() == model.config
    assert manifest.architecture.skips == "annealed" and not model.training
    assert manifest.input.shape == (1, 28, 28)
    expected = tiny_resnet(skips="annealed")  # same seed, same weights
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))


def test_saved_files_are_readable_by_other_users(folder):
    for name in ("manifest.json", "weights.safetensors"):
        assert (folder / name).stat().st_mode & 0o044 == 0o044, name


def test_discover_models_lists_folders_with_manifests(tmp_path):
    tiny_checkpoint(tmp_path, name="b")
    tiny_checkpoint(tmp_path, name="a")
    (tmp_path / "empty").mkdir()
    assert [p.name for p in discover_models(tmp_path)] == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        discover_models(tmp_path / "nope")


def test_missing_manifest(tmp_path):
    with pytest.raises(CheckpointError, match=r"manifest\.json: missing manifest file"):
        load_checkpoint(tmp_path)


def test_bad_json(folder):
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)


def test_unknown_format(folder):
    _set_manifest(folder, format="foldserve/9")
    with pytest.raises(CheckpointError, match="unknown format 'foldserve/9'"):
        load_checkpoint(folder)


def test_invalid_manifest_names_the_field(folder):
    _set_manifest(folder, labels=["a", "b"])
    with pytest.raises(CheckpointError, match=r"labels has 2 entries but architecture\.num_classes is 10"):
        read_manifest(folder)


def test_weights_path_cannot_leave_the_folder(folder):
    _set_manifest(folder, weights={"file": "../../etc/passwd", "sha256": "0" * 64})
    with pytest.raises(CheckpointError, match=r"weights\.file"):
        load_checkpoint(folder)


def test_missing_weights_file(folder):
    (folder / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: missing weights file"):
        load_checkpoint(folder)


def test_sha256_mismatch(folder):
    with (folder / "weights.safetensors").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(folder)


def test_corrupt_safetensors(folder):
    _rewrite_weights(folder, {})
    (folder / "weights.safetensors").write_bytes(b"\xff" * 64)
    digest = hashlib.sha256(b"\xff" * 64).hexdigest()
    _set_manifest(folder, weights={"file": "weights.safetensors", "sha256": digest})
    with pytest.raises(CheckpointError, match="unreadable safetensors file"):
        load_checkpoint(folder)


def test_missing_tensor(folder):
    state = load_file(str(folder / "weights.safetensors"))
    del state["fc.weight"]
    _rewrite_weights(folder, state)
    with pytest.raises(CheckpointError, match=r"missing tensors: fc\.weight"):
        load_checkpoint(folder)


def test_unexpected_tensor(folder):
    state = load_file(str(folder / "weights.safetensors"))
    state["extra.weight"] = torch.zeros(3)
    _rewrite_weights(folder, state)
    with pytest.raises(CheckpointError, match=r"unexpected tensors: extra\.weight"):
        load_checkpoint(folder)


def test_misshaped_tensor(folder):
    state = load_file(str(folder / "weights.safetensors"))
    state["fc.weight"] = torch.zeros(10, 3)
    _rewrite_weights(folder, state)
    with pytest.raises(CheckpointError, match=r"tensor fc.weight has shape \(10, 3\), expected \(10, 32\)"):
        load_checkpoint(folder)


def test_non_finite_tensor(folder):
    state = load_file(str(folder / "weights.safetensors"))
    state["fc.bias"][3] = float("nan")
    _rewrite_weights(folder, state)
    with pytest.raises(CheckpointError, match=r"fc\.bias holds NaN"):
        load_checkpoint(folder)


def _use_pt(folder: Path, payload: object) -> None:
    path = folder / "weights.pt"
    torch.save(payload, path)
    _set_manifest(folder, weights={"file": "weights.pt", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})


def test_plain_pt_state_dict_loads(folder):
    state = load_file(str(folder / "weights.safetensors"))
    _use_pt(folder, state)
    _, model = load_checkpoint(folder)
    assert torch.equal(model.fc.weight, state["fc.weight"])


class _Payload:
    """Unpickling this calls open(path, 'w'): the file appears only if the pickle is executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_malicious_pickle_never_runs(folder, tmp_path):
    marker = tmp_path / "pwned"
    _use_pt(folder, {"fc.weight": _Payload(marker)})
    with pytest.raises(CheckpointError, match=r"refused \.pt file"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_pt_with_non_tensor_values_is_refused(folder):
    _use_pt(folder, {"fc.weight": 3})
    with pytest.raises(CheckpointError, match="flat mapping of names to tensors"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("channels", "height", "width"),
    [(1, 28, 28), (3, 224, 224), (3, 1024, 1024), (4, 1024, 1024), (1, 4096, 1024)],
)
def test_reasonable_input_sizes_are_accepted(channels: int, height: int, width: int) -> None:
    spec = InputSpec(channels=channels, height=height, width=width, mean=[0.5] * channels, std=[0.25] * channels)
    assert spec.shape == (channels, height, width)


def test_an_absurd_input_size_is_refused_by_the_schema(folder):
    _set_manifest(folder, input={"channels": 1, "height": 4096, "width": 4096, "mean": [0.5], "std": [0.25]})
    with pytest.raises(CheckpointError) as info:
        read_manifest(folder)
    assert str(info.value) == (
        "tiny/manifest.json: invalid manifest: input: Value error, input is 1x4096x4096 = 16777216 values per image, "
        "more than 4194304 (4x1024x1024)"
    )


@pytest.mark.parametrize("field", ["mean", "std"])
def test_normalisation_must_be_finite(folder, field: str) -> None:
    _set_manifest(
        folder, input={"channels": 1, "height": 28, "width": 28, "mean": [0.5], "std": [0.25], field: [1e999]}
    )
    with pytest.raises(CheckpointError, match=rf"invalid manifest: input\.{field}\.0: Input should be a finite number"):
        read_manifest(folder)


def test_21843_classes_are_accepted(folder):
    _set_manifest(
        folder,
        architecture={**json.loads((folder / "manifest.json").read_text())["architecture"], "num_classes": 21843},
        labels=[f"n{i:08d}" for i in range(21843)],
    )
    assert read_manifest(folder).architecture.num_classes == 21843
