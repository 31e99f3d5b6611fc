"""The service on each runtime: /models and the metrics say which, and the answers equal eager PyTorch's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import RUNTIME_NAMES
from app.runtimes import GraphRefused
from app.serving.app import create_app
from tests.serving.conftest import LABELS, SIZE, digit_png, fast_settings, wait_until_loaded

PNG = {"content-type": "image/png"}
MODELS = ("linear", "annealed")


@pytest.fixture(scope="module")
def served(store: Path) -> Iterator[dict[str, TestClient]]:
    """One app per runtime setting, all on the same store: auto, and each runtime alone."""
    apps: dict[str, TestClient] = {}
    try:
        for runtimes in ("auto", *RUNTIME_NAMES):
            client = TestClient(create_app(fast_settings(store, runtimes=runtimes, batch_size="measured")))
            apps[runtimes] = client.__enter__()
            wait_until_loaded(client)
        yield apps
    finally:
        for client in apps.values():
            client.__exit__(None, None, None)


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    value: float | None = client.app.state.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value


def probabilities(client: TestClient, model: str, collapsed: bool) -> np.ndarray:
    rows = []
    for seed in range(4):
        url = f"/predict?model={model}&collapsed={str(collapsed).lower()}&top_k={len(LABELS)}"
        answer = client.post(url, content=digit_png(seed), headers=PNG)
        assert answer.status_code == 200, answer.text
        row = np.zeros(len(LABELS))
        for entry in answer.json()["predictions"][0]["top_k"]:
            row[entry["index"]] = entry["probability"]
        rows.append(row)
    return np.stack(rows)


def v2_outputs(client: TestClient, model: str, collapsed: bool) -> dict[str, np.ndarray]:
    x = np.random.default_rng(3).standard_normal((3, 1, SIZE, SIZE)).astype(np.float32)
    document = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        "parameters": {"collapsed": collapsed},
    }
    answer = client.post(f"/v2/models/{model}/infer", json=document)
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.asarray(o["data"], dtype=np.float64).reshape(o["shape"]) for o in answer.json()["outputs"]}


def test_models_report_every_candidate_and_the_metrics_the_choice(served: dict[str, TestClient]) -> None:
    client = served["auto"]
    for model in MODELS:
        variants: dict[str, Any] = client.get(f"/models/{model}").json()["variants"]
        for variant, info in variants.items():
            parts = info["runtime_from_batch"]
            assert info["runtime"] == "+".join(parts) and set(parts) <= set(RUNTIME_NAMES)
            assert sorted(parts.values())[0] == 1 and all(
                1 <= start <= info["max_batch_size"] for start in parts.values()
            )
            assert set(info["candidates"]) == set(RUNTIME_NAMES)
            assert [n for n, c in info["candidates"].items() if c["status"] == "served"] == list(parts)
            for name, candidate in info["candidates"].items():
                assert candidate["status"] in ("served", "passed"), (name, candidate)
                assert candidate["errors"]["max_rel_error"] < 1e-5
                assert candidate["errors"]["top1_agreement"] == 1.0
                assert candidate["latency_ms"]["1"] > 0
                assert candidate["graph"] in ((None,) if name == "eager" else ("exported", "cache"))
            assert 1 <= info["max_batch_size"] <= 8  # fast_settings' cap
            assert "1" in info["images_per_s"]
            for runtime in RUNTIME_NAMES:
                gauge = sample(client, "foldserve_variant_runtime_info", model=model, variant=variant, runtime=runtime)
                assert gauge == (1.0 if runtime in parts else 0.0)
            batch = sample(client, "foldserve_variant_max_batch_size", model=model, variant=variant)
            assert batch == info["max_batch_size"]


@pytest.mark.parametrize("runtimes", ["auto", "onnxruntime", "openvino"])
@pytest.mark.parametrize("model", MODELS)
def test_served_answers_equal_eager_answers(served: dict[str, TestClient], runtimes: str, model: str) -> None:
    client, eager = served[runtimes], served["eager"]
    for variant in client.get(f"/models/{model}").json()["variants"].values():
        assert variant["runtime"] == runtimes or runtimes == "auto"  # a runtime named alone serves alone
    for collapsed in (True, False):
        expected = probabilities(eager, model, collapsed)
        np.testing.assert_allclose(probabilities(client, model, collapsed), expected, atol=1e-5, rtol=0)
        ours, theirs = v2_outputs(client, model, collapsed), v2_outputs(eager, model, collapsed)
        np.testing.assert_allclose(ours["probabilities"], theirs["probabilities"], atol=1e-5, rtol=0)
        scale = np.abs(theirs["logits"]).max()  # float32 rounding grows with the logits: compared to their scale
        np.testing.assert_allclose(ours["logits"], theirs["logits"], atol=1e-5 * scale, rtol=0)


def test_batch_size_max_batches_every_variant_up_to_the_cap(store: Path) -> None:
    with TestClient(create_app(fast_settings(store, batch_size="max", max_batch_size=4))) as client:
        wait_until_loaded(client)
        for model in MODELS:
            for name, info in client.get(f"/models/{model}").json()["variants"].items():
                assert info["max_batch_size"] == 4, (model, name)
                assert client.app.state.models.entries[model].variants[name].batcher.max_batch_size == 4  # type: ignore[attr-defined]


def test_eager_alone_is_todays_service(served: dict[str, TestClient]) -> None:
    for model in MODELS:
        for variant in served["eager"].get(f"/models/{model}").json()["variants"].values():
            assert variant["runtime"] == "eager"
            assert set(variant["candidates"]) == {"eager"}


@pytest.fixture
def export_fails(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every ONNX export refused, with the reason returned."""
    reason = "ONNX export failed: planted by the test"

    def refuse(*_: object) -> bytes:
        raise GraphRefused(reason)

    monkeypatch.setattr("app.runtimes.select.export_onnx", refuse)
    return reason


def test_a_runtime_that_fails_is_not_served_and_models_say_why(store: Path, export_fails: str) -> None:
    settings = fast_settings(store, runtimes="auto", runtime_cache=None)
    with TestClient(create_app(settings)) as client:
        wait_until_loaded(client)
        variants = client.get("/models/annealed").json()["variants"]
        answer = client.post("/predict?model=annealed", content=digit_png(0), headers=PNG)
    assert answer.status_code == 200
    for info in variants.values():
        assert info["runtime"] == "eager"
        for name in ("onnxruntime", "openvino"):
            candidate = info["candidates"][name]
            assert candidate["status"] == "failed" and candidate["latency_ms"] == {}
            assert candidate["reason"] == export_fails


def test_a_model_no_runtime_can_serve_fails_with_every_reason(store: Path, export_fails: str) -> None:
    settings = fast_settings(store, runtimes="onnxruntime,openvino", runtime_cache=None)
    with TestClient(create_app(settings)) as client:
        body = wait_until_loaded(client)
        answer = client.post("/predict?model=annealed", content=digit_png(0), headers=PNG)
    reasons = {m["name"]: (m["status"], m["reason"]) for m in body["models"]}
    why = f"no runtime passed: onnxruntime: {export_fails}; openvino: {export_fails}"
    assert reasons["annealed"] == ("failed", why)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_failed"
