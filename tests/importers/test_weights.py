import warnings

import pytest
import torch
from safetensors.torch import save_file

from app.importers import ImportRefused, read_state_dict
from app.importers.weights import unwrap_state_dict
from tests.importers.support import save_pt

STATE = {"conv1.weight": torch.ones(2, 3), "fc.bias": torch.arange(3.0)}


def _equal(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "wrapped",
    [
        STATE,
        {"state_dict": STATE, "epoch": 3},
        {"model": STATE, "optimizer": {"lr": 0.1}},
        {"model_state_dict": STATE},
        {f"module.{k}": v for k, v in STATE.items()},
        {"state_dict": {f"module.{k}": v for k, v in STATE.items()}, "arch": "resnet18"},
    ],
    ids=["plain", "state_dict", "model", "model_state_dict", "module-prefix", "state_dict-module-prefix"],
)
def test_common_wrappings_are_undone(tmp_path, wrapped):
    assert _equal(read_state_dict(save_pt(tmp_path / "w.pth", wrapped)), STATE)


def test_a_prefix_on_only_some_keys_is_kept():
    state = {"module.conv1.weight": torch.ones(1), "fc.bias": torch.ones(1)}
    assert list(unwrap_state_dict(state, "w.pth")) == ["module.conv1.weight", "fc.bias"]


def test_safetensors_are_read(tmp_path):
    save_file(STATE, str(tmp_path / "w.safetensors"))
    assert _equal(read_state_dict(tmp_path / "w.safetensors"), STATE)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({}, "holds an empty mapping"),
        ({"epoch": 3, "arch": "resnet18"}, "holds a mapping with keys 'epoch', 'arch', not a state_dict"),
        ({"state_dict": {"a": 1}}, "holds a mapping with keys 'state_dict'"),
        (torch.ones(3), "holds a Tensor, not a state_dict"),
    ],
)
def test_files_without_a_state_dict_are_refused(tmp_path, obj, message):
    with pytest.raises(ImportRefused, match=message):
        read_state_dict(save_pt(tmp_path / "w.pt", obj))


def test_torchscript_archive_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, not our concern here
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "w.pt"))
    with pytest.raises(ImportRefused, match=r"not a torch\.save file .*TorchScript archives") as info:
        read_state_dict(tmp_path / "w.pt")
    assert "weights_only` set to `False`" not in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ImportRefused, match="no such weights file"):
        read_state_dict(tmp_path / "absent.pth")


def test_corrupt_safetensors_are_refused(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ImportRefused, match=r"w\.safetensors: unreadable safetensors file"):
        read_state_dict(tmp_path / "w.safetensors")
