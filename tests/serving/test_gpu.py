"""The CUDA path: models on the GPU, pinned staging, cudnn.benchmark, same answers as on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


def runs_on_cuda(runtime: Any) -> bool:
    """Eager PyTorch with its module on CUDA, or an ONNX Runtime session on CUDA's execution provider."""
    if runtime.name == "eager":
        return bool(next(runtime.module.parameters()).device.type == "cuda")
    return "CUDAExecutionProvider" in getattr(runtime, "providers", ())


def answers(store: Path, device: str) -> dict[tuple[str, str], list[float]]:
    results = {}
    with TestClient(create_app(fast_settings(store, device=device, max_wait_ms=20.0))) as client:
        body = wait_until_loaded(client)
        assert all(m["status"] == "ready" for m in body["models"]), body
        if device == "cuda":
            entry = client.app.state.models.entries["linear"]  # type: ignore[attr-defined]
            assert runs_on_cuda(entry.loaded.runtimes["original"].runtime)
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
            batcher = client.app.state.models.entries["linear"].variants["collapsed"].batcher  # type: ignore[attr-defined]
            assert batcher._staging is not None and batcher._staging.is_pinned()
    return results


def test_cuda_answers_match_cpu(store: Path) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    on_cpu, on_gpu = answers(store, "cpu"), answers(store, "cuda")
    for key, expected in on_cpu.items():
        assert on_gpu[key] == pytest.approx(expected, abs=1e-4), key


def v2_logits(store: Path, device: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x`` through the Open Inference Protocol's REST infer (FP32 as JSON), both variants of ``linear``."""
    results = {}
    with TestClient(create_app(fast_settings(store, device=device, max_wait_ms=20.0))) as client:
        wait_until_loaded(client)
        for collapsed in (True, False):
            body = {
                "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.flatten().tolist()}],
                "outputs": [{"name": "logits"}],
                "parameters": {"collapsed": collapsed},
            }
            response = client.post("/v2/models/linear/infer", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["parameters"]["variant"] == ("collapsed" if collapsed else "original")
            (logits,) = answer["outputs"]
            results[answer["parameters"]["variant"]] = torch.tensor(logits["data"]).view(logits["shape"])
    return results


def test_v2_infer_on_cuda_matches_cpu(store: Path) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    on_cpu, on_gpu = v2_logits(store, "cpu", x), v2_logits(store, "cuda", x)
    assert set(on_gpu) == {"collapsed", "original"}
    for network, expected in on_cpu.items():
        scale = expected.abs().max().item()
        torch.testing.assert_close(on_gpu[network], expected, atol=1e-4 * scale, rtol=0, msg=network)


def test_imported_resnet50_on_cuda_answers_as_torchvision(tmp_path: Path) -> None:
    """A torchvision ResNet-50 imported from its state_dict and served on the GPU (batch norm folded)."""
    from app.__main__ import main
    from app.serving.images import decode_image
    from app.store import read_manifest
    from tests.importers.support import IMAGENET, assert_predicts, save_pt, torchvision_resnet
    from tests.serving.conftest import png

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    classes = 10
    reference = torchvision_resnet("resnet50", num_classes=classes, seed=3)
    weights = save_pt(tmp_path / "resnet50.pth", reference.state_dict())
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"c{i}\n" for i in range(classes)), encoding="utf-8")
    out = tmp_path / "store" / "resnet50"
    args = ["import", "torchvision", "resnet50", str(weights), "--out", str(out), "--labels", str(labels)]
    assert main([*args, "--input", "3x64x64", *IMAGENET, "--resize", "72", "--crop", "center"]) == 0
    image = png(np.random.default_rng(7).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    spec = read_manifest(out).input
    with torch.no_grad():
        expected = torch.softmax(reference.double()(decode_image(image, spec, max_pixels=10**6)[None].double()), 1)[0]
    settings = fast_settings(out.parent, device="cuda", verification_samples=2, max_wait_ms=20.0)
    with TestClient(create_app(settings)) as client:
        (model,) = wait_until_loaded(client)["models"]
        assert model["status"] == "ready", model
        entry = client.app.state.models.entries["resnet50"]  # type: ignore[attr-defined]
        assert runs_on_cuda(entry.loaded.runtimes["original"].runtime)
        for collapsed in ("true", "false"):
            answer = client.post(
                f"/predict?model=resnet50&top_k={classes}&collapsed={collapsed}", content=image, headers=PNG
            )
            assert answer.status_code == 200, answer.text
            (prediction,) = answer.json()["predictions"]
            assert_predicts(prediction, expected, atol=1e-4, msg=f"collapsed={collapsed}")
