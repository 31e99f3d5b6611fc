"""torchvision ResNets imported from their state_dicts, then served: both variants answer as torchvision does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.__main__ import main
from app.serving import create_app
from app.serving.images import decode_image
from app.store import read_manifest
from tests.importers.support import IMAGENET, assert_predicts, save_pt, torchvision_resnet
from tests.serving.conftest import fast_settings, png, wait_until_loaded

CLASSES = 10


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_an_imported_resnet_is_served_as_torchvision_computes_it(tmp_path: Path, arch: str) -> None:
    reference = torchvision_resnet(arch, num_classes=CLASSES, seed=3)
    weights = save_pt(tmp_path / f"{arch}.pth", reference.state_dict())
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"c{i}\n" for i in range(CLASSES)), encoding="utf-8")
    store = tmp_path / "store"
    args = ["import", "torchvision", arch, str(weights), "--out", str(store / arch), "--labels", str(labels)]
    assert main([*args, "--input", "3x64x64", *IMAGENET, "--resize", "72", "--crop", "center"]) == 0
    image = png(np.random.default_rng(7).integers(0, 256, (90, 120, 3), dtype=np.uint8))  # RGB, not square
    spec = read_manifest(store / arch).input
    with torch.no_grad():
        expected = torch.softmax(reference.double()(decode_image(image, spec, max_pixels=10**6)[None].double()), 1)[0]
    with TestClient(create_app(fast_settings(store, verification_samples=2))) as client:
        (model,) = wait_until_loaded(client)["models"]
        assert model["status"] == "ready", model
        answers = {
            variant: client.post(
                f"/predict?model={arch}&top_k={CLASSES}&collapsed={str(variant == 'collapsed').lower()}",
                content=image,
                headers={"content-type": "image/png"},
            )
            for variant in ("collapsed", "original")
        }
    assert model["simplification"]["kind"] == "batchnorm-folded"
    for variant, answer in answers.items():
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert_predicts(prediction, expected, atol=1e-5, msg=f"{arch} {variant}")
