"""A model store is trusted as a whole: files linked from outside it are refused, links inside it are fine,
and messages name files relative to the store, never by their absolute path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from app.nets.footprint import state_bytes
from app.store import CheckpointError, ModelStore, discover_models, load_checkpoint, read_manifest
from tests.helpers import tiny_checkpoint, tiny_resnet

REFUSED = "a symlink leads outside the model store; refused (set FOLDSERVE_ALLOW_SYMLINKS_OUT_OF_STORE=true"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    tiny_checkpoint(root, name="m")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A checkpoint folder that is not in the store."""
    return tiny_checkpoint(tmp_path / "elsewhere", name="foreign")


def _refusal(directory: Path, store: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(directory, store=ModelStore(store))
    return str(info.value)


def test_a_folder_linked_from_outside_is_listed_then_refused(
    store: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (store / "linked").symlink_to(outside, target_is_directory=True)
    assert [p.name for p in discover_models(store)] == ["linked", "m"]  # listed, so it shows up as failed
    assert _refusal(store / "linked", store) == f"linked: {REFUSED} to serve files linked from elsewhere)"
    # the operator's log says where the link leads; the message, which clients see, does not
    assert caplog.messages == [
        f"{store / 'linked'} resolves to {outside.resolve()}, outside the model store {store.resolve()}"
    ]


def test_a_weights_file_linked_from_outside_is_refused(store: Path, outside: Path) -> None:
    weights = store / "m" / "weights.safetensors"
    weights.unlink()
    weights.symlink_to(outside / "weights.safetensors")  # same bytes, so only the location is wrong
    assert _refusal(store / "m", store).startswith(f"m/weights.safetensors: {REFUSED}")
    read_manifest(store / "m", store=ModelStore(store))  # the manifest itself is fine


def test_a_manifest_linked_from_outside_is_refused(store: Path, outside: Path) -> None:
    manifest = store / "m" / "manifest.json"
    manifest.unlink()
    manifest.symlink_to(outside / "manifest.json")
    assert _refusal(store / "m", store).startswith(f"m/manifest.json: {REFUSED}")


def test_a_folder_inside_the_store_reached_through_a_parent_link_is_refused(store: Path, outside: Path) -> None:
    (store / "m" / "sub").symlink_to(outside.parent, target_is_directory=True)
    assert _refusal(store / "m" / "sub" / "foreign", store).startswith(f"m/sub/foreign: {REFUSED}")


def test_links_that_stay_inside_the_store_are_served(store: Path) -> None:
    (store / "alias").symlink_to(store / "m", target_is_directory=True)
    shutil.copytree(store / "m", store / "shared")
    (store / "shared" / "weights.safetensors").unlink()
    (store / "shared" / "weights.safetensors").symlink_to(store / "m" / "weights.safetensors")
    expected = tiny_resnet()
    x = torch.randn(2, 1, 28, 28)
    for name in ("alias", "shared"):
        _, model = load_checkpoint(store / name, store=ModelStore(store))
        with torch.no_grad():
            assert torch.equal(model(x), expected(x)), name


def test_a_store_that_is_itself_a_link_serves_its_models(tmp_path: Path, store: Path) -> None:
    (tmp_path / "current").symlink_to(store, target_is_directory=True)
    manifest, _ = load_checkpoint(tmp_path / "current" / "m", store=ModelStore(tmp_path / "current"))
    assert manifest.name == "m"


def test_links_out_of_the_store_load_when_allowed(store: Path, outside: Path) -> None:
    (store / "linked").symlink_to(outside, target_is_directory=True)
    manifest, model = load_checkpoint(store / "linked", store=ModelStore(store, allow_links_out=True))
    assert manifest.name == "foreign" and not model.training


def test_a_folder_read_on_its_own_follows_links_anywhere(store: Path, outside: Path) -> None:
    (store / "linked").symlink_to(outside, target_is_directory=True)
    manifest, _ = load_checkpoint(store / "linked")  # a command line tool names the folder it means
    assert manifest.name == "foreign"


@pytest.mark.parametrize("relative", [False, True])
def test_messages_name_files_relative_to_the_store(
    store: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    if relative:  # FOLDSERVE_MODEL_STORE=store, as a relative path
        monkeypatch.chdir(store.parent)
        store = Path("store")
    (store / "m" / "weights.safetensors").write_bytes(b"\0" * 64)
    message = _refusal(store / "m", store)
    assert message.startswith("m/weights.safetensors: sha256 mismatch: file has ")
    (store / "m" / "weights.safetensors").unlink()
    assert _refusal(store / "m", store) == "m/weights.safetensors: missing weights file"
    (store / "m" / "manifest.json").write_text("[]")
    assert _refusal(store / "m", store) == "m/manifest.json: manifest must be a JSON object, got list"
    assert str(store.resolve()) not in message


def test_without_a_store_messages_name_the_folder_and_file(store: Path) -> None:
    (store / "m" / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(store / "m")
    assert str(info.value) == "m/weights.safetensors: missing weights file"
    assert info.value.path == Path("m/weights.safetensors")


def test_library_errors_lose_the_store_location(store: Path) -> None:
    models = ModelStore(store)
    text = f"[Errno 2] No such file or directory: '{store.resolve()}/m/weights.pt'"
    assert models.scrub(text) == "[Errno 2] No such file or directory: 'm/weights.pt'"


def test_an_oversized_weights_file_is_refused_before_it_is_hashed(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.store.checkpoint.sha256_file", lambda path: pytest.fail("hashed an oversized file"))
    weights = store / "m" / "weights.safetensors"
    with weights.open("r+b") as f:
        f.truncate(64 << 20)  # sparse: no disk is used
    limit = 2 * state_bytes(read_manifest(store / "m").architecture.to_config()) + 16 * 2**20  # float64 + headers
    assert _refusal(store / "m", store) == (
        f"m/weights.safetensors: weights file has 67108864 bytes, more than the {limit} bytes that the manifest's "
        "architecture needs"
    )
