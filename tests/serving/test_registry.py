"""Loading the store: failed models are listed with their reason while the others serve; readiness; defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from app.serving import create_app
from tests.serving.conftest import SIZE, digit_png, fast_settings, wait_until_loaded

PNG = {"content-type": "image/png"}


@pytest.fixture
def mixed_store(tmp_path: Path, annealed_store: Path) -> Path:
    """The annealed model, plus one with a corrupt manifest and one whose weights do not match their hash."""
    shutil.copytree(annealed_store / "annealed", tmp_path / "annealed")
    (tmp_path / "broken-json").mkdir()
    (tmp_path / "broken-json" / "manifest.json").write_text("{not json", encoding="utf-8")
    shutil.copytree(annealed_store / "annealed", tmp_path / "tampered")
    weights = tmp_path / "tampered" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    return tmp_path


def test_failed_models_are_listed_with_their_reason_and_the_others_serve(mixed_store: Path) -> None:
    with TestClient(create_app(fast_settings(mixed_store))) as client:
        body = wait_until_loaded(client)
        models = {m["name"]: m for m in body["models"]}
        assert {name: m["status"] for name, m in models.items()} == {
            "annealed": "ready",
            "broken-json": "failed",
            "tampered": "failed",
        }
        assert "manifest is not valid JSON" in models["broken-json"]["reason"]
        assert "sha256 mismatch" in models["tampered"]["reason"]
        readiness = client.get("/readyz").json()  # every model has finished loading, one serves: ready
        assert readiness["models"] == ["annealed"] and set(readiness["failed"]) == {"broken-json", "tampered"}
        assert "sha256 mismatch" in readiness["failed"]["tampered"]
        response = client.post("/predict?model=tampered", content=digit_png(), headers=PNG)
        assert response.status_code == 503 and response.json()["error"]["code"] == "model_failed"
        assert "retry-after" not in response.headers  # retrying will not load it
        assert "sha256 mismatch" in response.json()["error"]["message"]
        assert client.post("/predict?model=annealed", content=digit_png(), headers=PNG).status_code == 200
        registry = client.app.state.metrics.registry  # type: ignore[attr-defined]
        assert registry.get_sample_value("foldserve_model_ready", {"model": "annealed"}) == 1
        assert registry.get_sample_value("foldserve_model_ready", {"model": "tampered"}) == 0


def test_a_simplification_over_tolerance_is_not_served(annealed_store: Path) -> None:
    # float32 rounding alone is ~1e-7 of the output scale: a tolerance of 1e-30 cannot be met
    with TestClient(create_app(fast_settings(annealed_store, verification_tolerance=1e-30))) as client:
        (model,) = wait_until_loaded(client)["models"]
        readiness = client.get("/readyz")
        response = client.post("/predict", content=digit_png(), headers=PNG)
    assert model["status"] == "failed"
    assert "misses the tolerance" in model["reason"]
    assert model["simplification"]["max_rel_error"] > 1e-30  # what was measured is still shown
    assert readiness.status_code == 503 and readiness.headers["retry-after"] == "1"
    assert readiness.json()["error"]["message"].startswith("not ready: no model is ready; failed to load: annealed: ")
    assert response.status_code == 503 and response.json()["error"]["message"] == "no model is ready yet"


def test_empty_store_is_never_ready(tmp_path: Path) -> None:
    with TestClient(create_app(fast_settings(tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/models").json() == {"default": None, "models": []}
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["error"] == {
        "code": "unavailable",
        "message": "not ready: the model store holds no model",
    }


def test_default_model_setting_is_used(store: Path) -> None:
    with TestClient(create_app(fast_settings(store, default_model="linear"))) as client:
        wait_until_loaded(client)
        response = client.post("/predict", content=digit_png(), headers=PNG)
        assert client.get("/models").json()["default"] == "linear"
    assert response.status_code == 200 and response.json()["model"] == "linear"


def test_shipped_samples_are_used_for_verification(tmp_path: Path, annealed_store: Path) -> None:
    shutil.copytree(annealed_store / "annealed", tmp_path / "annealed")
    images = torch.randn(6, 1, SIZE, SIZE)
    save_file({"images": images, "labels": torch.arange(6)}, str(tmp_path / "annealed" / "samples.safetensors"))
    with TestClient(create_app(fast_settings(tmp_path))) as client:
        (model,) = wait_until_loaded(client)["models"]
    assert model["verification_samples"] == "6 images shipped in samples.safetensors"
    assert model["simplification"]["num_inputs"] == 16 + 6  # simplify's random inputs and the samples


def test_samples_of_the_wrong_shape_are_ignored(tmp_path: Path, annealed_store: Path) -> None:
    shutil.copytree(annealed_store / "annealed", tmp_path / "annealed")
    save_file({"images": torch.randn(3, 1, 5, 5)}, str(tmp_path / "annealed" / "samples.safetensors"))
    with TestClient(create_app(fast_settings(tmp_path, verification_samples=2))) as client:
        (model,) = wait_until_loaded(client)["models"]
    assert model["status"] == "ready"
    assert model["verification_samples"] == "2 random pixel-range images"


def test_unreadable_manifest_fields_are_reported(tmp_path: Path, annealed_store: Path) -> None:
    shutil.copytree(annealed_store / "annealed", tmp_path / "annealed")
    manifest = json.loads((tmp_path / "annealed" / "manifest.json").read_text())
    manifest["labels"] = manifest["labels"][:2]
    (tmp_path / "annealed" / "manifest.json").write_text(json.dumps(manifest))
    with TestClient(create_app(fast_settings(tmp_path))) as client:
        (model,) = wait_until_loaded(client)["models"]
    assert model["status"] == "failed" and "num_classes" in model["reason"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
def test_cuda_without_cuda_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        create_app(fast_settings(tmp_path, device="cuda"))
