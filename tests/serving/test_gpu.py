"""The CUDA path: models on the GPU, pinned staging, cudnn.benchmark, same answers as on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.serving import create_app
from tests.serving.conftest import digit_png, fast_settings, wait_until_loaded

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
]
PNG = {"content-type": "image/png"}


def answers(store: Path, device: str) -> dict[tuple[str, str], list[float]]:
    results = {}
    with TestClient(create_app(fast_settings(store, device=device, max_wait_ms=20.0))) as client:
        body = wait_until_loaded(client)
        assert all(m["status"] == "ready" for m in body["models"]), body
        if device == "cuda":
            entry = client.app.state.models.entries["linear"]  # type: ignore[attr-defined]
            assert next(entry.loaded.original.parameters()).device.type == "cuda"
            assert torch.backends.cudnn.benchmark
        for model in ("linear", "annealed"):
            for collapsed in ("true", "false"):
                files = [("file", (f"{i}.png", digit_png(i), "image/png")) for i in range(3)]
                response = client.post(f"/predict?model={model}&collapsed={collapsed}&top_k=5", files=files)
                assert response.status_code == 200, response.text
                probabilities = [0.0] * 5 * 3
                for i, prediction in enumerate(response.json()["predictions"]):
                    for entry in prediction["top_k"]:
                        probabilities[i * 5 + entry["index"]] = entry["probability"]
                results[(model, collapsed)] = probabilities
        if device == "cuda":
            batcher = client.app.state.models.entries["linear"].batchers["collapsed"]  # type: ignore[attr-defined]
            assert batcher._staging is not None and batcher._staging.is_pinned()
    return results


def test_cuda_answers_match_cpu(store: Path) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    on_cpu, on_gpu = answers(store, "cpu"), answers(store, "cuda")
    for key, expected in on_cpu.items():
        assert on_gpu[key] == pytest.approx(expected, abs=1e-4), key
