"""Symlinks in the model store, through the service: a model linked from outside is listed as failed with the
reason, links inside the store serve, the setting lets links out, and no reason shows an absolute path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from app.serving import create_app
from app.serving.loading import load_model
from app.store import CheckpointError
from tests.serving.conftest import SIZE, digit_png, fast_settings, wait_until_loaded

PNG = {"content-type": "image/png"}
REFUSED = (
    "a symlink leads outside the model store; refused (set FOLDSERVE_ALLOW_SYMLINKS_OUT_OF_STORE=true to serve "
    "files linked from elsewhere)"
)


@pytest.fixture
def linked_store(tmp_path: Path, annealed_store: Path) -> Path:
    """``annealed``; ``alias``, a link to it; ``linked``, a link to a copy outside the store; ``tampered``."""
    store = tmp_path / "store"
    store.mkdir()
    shutil.copytree(annealed_store / "annealed", store / "annealed")
    (store / "alias").symlink_to(store / "annealed", target_is_directory=True)
    shutil.copytree(annealed_store / "annealed", tmp_path / "outside")
    (store / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    shutil.copytree(annealed_store / "annealed", store / "tampered")
    weights = store / "tampered" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    return store


def test_a_model_linked_from_outside_is_listed_as_failed_with_the_reason(linked_store: Path) -> None:
    with TestClient(create_app(fast_settings(linked_store))) as client:
        body = wait_until_loaded(client)
        response = client.post("/predict?model=linked", content=digit_png(), headers=PNG)
        served = client.post("/predict?model=alias", content=digit_png(), headers=PNG)
    models = {m["name"]: m for m in body["models"]}
    assert {name: m["status"] for name, m in models.items()} == {
        "alias": "ready",
        "annealed": "ready",
        "linked": "failed",
        "tampered": "failed",
    }
    assert models["linked"]["reason"] == f"linked: {REFUSED}"
    assert models["tampered"]["reason"].startswith("tampered/weights.safetensors: sha256 mismatch: file has ")
    assert str(linked_store.parent) not in str(body)  # no reason shows where the store is
    assert response.status_code == 503
    assert response.json()["error"]["message"] == f"model 'linked' failed to load: linked: {REFUSED}"
    assert served.status_code == 200 and served.json()["model"] == "alias"


def test_links_out_of_the_store_serve_when_allowed(linked_store: Path) -> None:
    settings = fast_settings(linked_store, allow_symlinks_out_of_store=True)
    with TestClient(create_app(settings)) as client:
        models = {m["name"]: m["status"] for m in wait_until_loaded(client)["models"]}
    assert models == {"alias": "ready", "annealed": "ready", "linked": "ready", "tampered": "failed"}


def test_samples_linked_from_outside_are_refused(linked_store: Path, tmp_path: Path) -> None:
    save_file({"images": torch.zeros(2, 1, SIZE, SIZE)}, str(tmp_path / "samples.safetensors"))
    (linked_store / "annealed" / "samples.safetensors").symlink_to(tmp_path / "samples.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_model(linked_store / "annealed", fast_settings(linked_store), torch.device("cpu"))
    assert str(info.value) == f"annealed/samples.safetensors: {REFUSED}"


def test_samples_linked_inside_the_store_are_verified_on(linked_store: Path) -> None:
    save_file({"images": torch.zeros(3, 1, SIZE, SIZE)}, str(linked_store / "shared-samples.safetensors"))
    (linked_store / "annealed" / "samples.safetensors").symlink_to(linked_store / "shared-samples.safetensors")
    loaded = load_model(linked_store / "annealed", fast_settings(linked_store), torch.device("cpu"))
    assert loaded.samples == "3 images shipped in samples.safetensors"
    assert loaded.report["num_inputs"] == 16 + 3
