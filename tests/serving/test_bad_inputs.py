"""A corpus of bad requests: each gets its own 4xx with the error body, and the next good request still works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.serving import create_app
from tests.serving.conftest import digit_png, fast_settings, png, wait_until_loaded
from tests.serving.test_images import png_header_claiming

MAX_BODY = 64 * 1024
MAX_IMAGES = 3
PNG = {"content-type": "image/png"}


def noise_png(size: int) -> bytes:
    return png(np.random.default_rng(size).integers(0, 256, (size, size), dtype=np.uint8))


def files(*blobs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


TEXT = {"content-type": "text/plain"}
NO_BOUNDARY = {"content-type": "multipart/form-data"}
OTHER_PART = {"other": ("a.png", b"a", "image/png")}

# (id, request keyword arguments for client.post, status, error code)
CORPUS: list[tuple[str, dict[str, Any], int, str]] = [
    ("empty-body", {"content": b"", "headers": PNG}, 400, "invalid_image"),
    ("text-as-png", {"content": b"just some text", "headers": PNG}, 400, "invalid_image"),
    ("truncated-png", {"content": noise_png(64)[:300], "headers": PNG}, 400, "invalid_image"),
    ("png-100000x100000", {"content": png_header_claiming(100_000, 100_000), "headers": PNG}, 413, "image_too_large"),
    ("png-over-pixel-limit", {"content": png_header_claiming(300, 300), "headers": PNG}, 413, "image_too_large"),
    ("zero-size-image", {"content": png_header_claiming(0, 0), "headers": PNG}, 400, "invalid_image"),
    ("text-content-type", {"content": b"hello", "headers": TEXT}, 415, "unsupported_media_type"),
    ("json-content-type", {"json": {"image": "x"}}, 415, "unsupported_media_type"),
    ("no-content-type", {"content": digit_png()}, 415, "unsupported_media_type"),
    ("too-many-files", {"files": files(*(digit_png(i) for i in range(MAX_IMAGES + 1)))}, 413, "too_many_images"),
    ("huge-raw-body", {"content": b"\0" * (MAX_BODY + 1), "headers": PNG}, 413, "body_too_large"),
    ("huge-multipart", {"files": files(noise_png(300))}, 413, "body_too_large"),
    ("multipart-without-file", {"data": {"image": "x"}, "files": OTHER_PART}, 400, "bad_request"),
    ("file-field-not-a-file", {"data": {"file": "not a file"}, "files": OTHER_PART}, 400, "bad_request"),
    ("multipart-without-boundary", {"content": b"--x\r\n", "headers": NO_BOUNDARY}, 400, "bad_request"),
    ("one-bad-image-of-two", {"files": files(digit_png(), b"garbage")}, 400, "invalid_image"),
]


@pytest.fixture(scope="module")
def client(annealed_store: Path) -> Iterator[TestClient]:
    settings = fast_settings(
        annealed_store, max_body_bytes=MAX_BODY, max_images_per_request=MAX_IMAGES, max_image_pixels=256 * 256
    )
    with TestClient(create_app(settings)) as client:
        wait_until_loaded(client)
        yield client


@pytest.mark.parametrize(("request_kwargs", "status", "code"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_request_gets_its_4xx_then_a_good_one_works(
    client: TestClient, request_kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = client.post("/predict?model=annealed", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    good = client.post("/predict?model=annealed", content=digit_png(), headers=PNG)
    assert good.status_code == 200, good.text


def test_every_bad_answer_is_counted_by_status(client: TestClient) -> None:
    registry = client.app.state.metrics.registry  # type: ignore[attr-defined]

    def counted(status: int) -> float:
        labels = {"model": "annealed", "variant": "collapsed", "protocol": "predict", "status": str(status)}
        return registry.get_sample_value("foldserve_requests_total", labels) or 0.0

    statuses = sorted({c[2] for c in CORPUS})
    before = {status: counted(status) for status in statuses}
    for _, request_kwargs, _, _ in CORPUS:
        client.post("/predict?model=annealed", **request_kwargs)
    for status in statuses:
        assert counted(status) - before[status] == sum(1 for c in CORPUS if c[2] == status), status


def test_one_bad_image_names_its_position(client: TestClient) -> None:
    response = client.post("/predict?model=annealed", files=files(digit_png(), digit_png(), b""))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "image 2: empty image"
