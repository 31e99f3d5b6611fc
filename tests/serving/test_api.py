"""Every endpoint through TestClient, against a store with a linear (affine) and an annealed model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.serving import create_app
from app.serving.images import decode_image
from app.serving.metrics import LOAD_STAGES
from app.store import load_checkpoint
from tests.serving.conftest import LABELS, digit_png, fast_settings, wait_until_loaded


@pytest.fixture(scope="module")
def client(store: Path) -> Iterator[TestClient]:
    with TestClient(create_app(fast_settings(store))) as client:
        wait_until_loaded(client)
        yield client


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    value: float | None = client.app.state.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value


def expected_probabilities(store: Path, model: str, data: bytes) -> torch.Tensor:
    """What the original network says about ``data``, computed here without the service."""
    manifest, network = load_checkpoint(store / model)
    x = decode_image(data, manifest.input, max_pixels=10**6).unsqueeze(0)
    with torch.no_grad():
        return torch.softmax(network(x).double(), dim=1)[0]


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_lists_ready_models(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "models": ["annealed", "linear"], "failed": {}}


def test_models_lists_both_with_their_simplification(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["default"] == "annealed"  # first by name
    models = {m["name"]: m for m in body["models"]}
    assert {name: m["status"] for name, m in models.items()} == {"annealed": "ready", "linear": "ready"}
    assert models["linear"]["simplification"]["kind"] == "affine"
    assert models["annealed"]["simplification"]["kind"] == "skips-stripped"
    linear = models["linear"]
    assert linear["labels"] == LABELS and linear["input"]["height"] == 12
    assert linear["variants"]["collapsed"]["parameters"] == 12 * 12 * len(LABELS) + len(LABELS)  # W and b
    assert linear["variants"]["original"]["parameters"] > linear["variants"]["collapsed"]["parameters"]
    assert linear["simplification"]["max_rel_error"] <= linear["simplification"]["tolerance"] == 1e-4
    assert linear["simplification"]["top1_agreement"] == 1.0
    assert linear["forward_speedup"] > 0 and set(linear["load_seconds"]) == set(LOAD_STAGES)
    assert linear["verification_samples"] == "4 random pixel-range images"


def test_one_model(client: TestClient) -> None:
    response = client.get("/models/linear")
    assert response.status_code == 200 and response.json()["name"] == "linear"


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.get("/models/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert "known models: annealed, linear" in response.json()["error"]["message"]
    response = client.post("/predict?model=nope", content=digit_png(), headers={"content-type": "image/png"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_predict_multipart_uses_the_default_model(client: TestClient) -> None:
    response = client.post("/predict", files={"file": ("digit.png", digit_png(1), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["variant"], body["simplification"]) == ("annealed", "collapsed", "skips-stripped")
    (prediction,) = body["predictions"]
    probabilities = [entry["probability"] for entry in prediction["top_k"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert prediction["label"] == LABELS[prediction["index"]] == prediction["top_k"][0]["label"]
    assert set(body["timings_ms"]) == {"decode", "queue", "inference", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["inference"] > 0


@pytest.mark.parametrize("model", ["linear", "annealed"])
def test_both_variants_give_the_original_networks_answer(client: TestClient, store: Path, model: str) -> None:
    data = digit_png(7)
    expected = expected_probabilities(store, model, data)
    for collapsed in ("true", "false"):
        response = client.post(
            f"/predict?model={model}&collapsed={collapsed}&top_k=5",
            content=data,
            headers={"content-type": "image/png"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["variant"] == ("collapsed" if collapsed == "true" else "original")
        got = torch.zeros(len(LABELS), dtype=torch.float64)
        for entry in body["predictions"][0]["top_k"]:
            got[entry["index"]] = entry["probability"]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_several_files_are_answered_in_order(client: TestClient) -> None:
    files = [("file", (f"{i}.png", digit_png(seed), "image/png")) for i, seed in enumerate((1, 2, 1))]
    response = client.post("/predict?model=linear&top_k=1", files=files)
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    assert len(predictions) == 3
    assert predictions[0] == predictions[2]
    assert predictions[0]["top_k"] != predictions[1]["top_k"]


@pytest.mark.parametrize(
    "query", ["top_k=0", "top_k=100001", "top_k=x", "collapsed=maybe", f"model={'m' * 65}", "model="]
)
def test_invalid_parameters_are_422(client: TestClient, query: str) -> None:
    response = client.post(f"/predict?model=linear&{query}", content=digit_png(), headers={"content-type": "image/png"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_top_k_past_the_classes_lists_them_all(client: TestClient) -> None:
    response = client.post("/predict?model=linear&top_k=6", content=digit_png(), headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    assert sorted(entry["index"] for entry in response.json()["predictions"][0]["top_k"]) == list(range(len(LABELS)))


def test_metrics_count_answers_and_describe_models(client: TestClient) -> None:
    labels = {"model": "linear", "variant": "original"}
    requests = {**labels, "protocol": "predict"}
    before = sample(client, "foldserve_requests_total", **requests, status="200") or 0.0
    client.post("/predict?model=linear&collapsed=false", content=digit_png(), headers={"content-type": "image/png"})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'foldserve_model_ready{model="linear"} 1.0' in response.text
    assert sample(client, "foldserve_requests_total", **requests, status="200") == before + 1
    assert (sample(client, "foldserve_request_duration_seconds_count", **requests) or 0) >= 1
    assert (sample(client, "foldserve_decode_duration_seconds_count", **labels) or 0) >= 1
    assert (sample(client, "foldserve_queue_duration_seconds_count", **labels) or 0) >= 1
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    linear = models["linear"]
    assert sample(client, "foldserve_load_forward_speedup_ratio", model="linear") == pytest.approx(
        linear["forward_speedup"]
    )
    assert sample(client, "foldserve_model_parameters", model="linear", variant="collapsed") == 12 * 12 * 5 + 5
    assert (
        sample(client, "foldserve_model_macs", model="linear", variant="collapsed")
        == linear["simplification"]["macs_after"]
    )
    assert sample(client, "foldserve_verification_error", model="linear", measure="max_abs") == pytest.approx(
        linear["simplification"]["max_abs_error"]
    )
    for stage in LOAD_STAGES:
        assert sample(client, "foldserve_model_load_seconds", model="linear", stage=stage) == pytest.approx(
            linear["load_seconds"][stage]
        )


def test_metrics_include_process_memory(client: TestClient) -> None:
    rss = sample(client, "process_resident_memory_bytes")
    assert rss is not None and rss > 50 * 2**20  # torch alone is hundreds of MiB


def test_docs_and_openapi(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/models", "/models/{name}", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_unknown_path_and_method_use_the_error_body(client: TestClient) -> None:
    response = client.get("/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = client.get("/predict")
    assert response.status_code == 405 and "error" in response.json()
