"""The runtime cache under faults, through the service: a full disk, and an entry truncated on disk.

Each ends with the model serving the right answers and a warning that says what happened. Already tested in
tests/runtimes/test_cache.py, below the service: a truncated graph refused by its checksum and exported again,
a whole graph of other weights caught by verification, a cache folder that cannot be created, and graphs that
could read files or reach code refused by ``check_graph``.
"""

from __future__ import annotations

import errno
import logging
import os
import types
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import app.runtimes.cache as cache_module
from app.serving import create_app
from tests.serving.conftest import digit_png, fast_settings, wait_until_loaded, write_checkpoint

PNG = {"content-type": "image/png"}


def serve(store: Path, cache: Path) -> TestClient:
    return TestClient(create_app(fast_settings(store, runtime_cache=cache, runtimes="eager,onnxruntime")))


def answers(client: TestClient) -> list[list[float]]:
    """Every class's probability for three images, from both variants."""
    rows = []
    for collapsed in ("true", "false"):
        for seed in range(3):
            response = client.post(
                f"/predict?model=m&collapsed={collapsed}&top_k=5", content=digit_png(seed), headers=PNG
            )
            assert response.status_code == 200, response.text
            (prediction,) = response.json()["predictions"]
            rows.append([score["probability"] for score in sorted(prediction["top_k"], key=lambda s: s["index"])])
    return rows


class _FullDisk:
    """A file whose writes stop half way with ENOSPC, as on a full disk (the bytes before it do reach the disk)."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(self, data: bytes) -> int:
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def test_a_full_disk_costs_the_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_checkpoint(tmp_path / "store", "m")
    cache = tmp_path / "cache"
    full = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    full.fdopen = lambda fd, *args, **kwargs: _FullDisk(os.fdopen(fd, *args, **kwargs))
    monkeypatch.setattr(cache_module, "os", full)  # the cache's own writes only: nothing else in the process
    with caplog.at_level(logging.WARNING, logger="app.runtimes.cache"), serve(tmp_path / "store", cache) as client:
        body = wait_until_loaded(client)
        served = answers(client)
    (model,) = body["models"]
    assert model["status"] == "ready"
    assert len(served) == 6
    warnings = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(warnings) == 4, caplog.text  # one graph and one runtime choice per variant
    assert all("No space left on device" in w for w in warnings), warnings
    assert sum("graph is exported again next start" in w for w in warnings) == 2, warnings
    assert sum("candidates are timed again next start" in w for w in warnings) == 2, warnings
    assert sorted(p.name for p in cache.iterdir()) == []  # no half-written temporary, no entry without its graph


def test_a_truncated_cache_entry_is_refused_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_checkpoint(tmp_path / "store", "m")
    cache = tmp_path / "cache"
    with serve(tmp_path / "store", cache) as client:
        wait_until_loaded(client)
        first = answers(client)
    graphs = sorted(cache.glob("*.onnx"))
    assert len(graphs) == 2
    whole = {path: path.read_bytes() for path in graphs}
    for path, data in whole.items():
        path.write_bytes(data[: len(data) // 3])  # a crash in the middle of a copy, a disk that lost the tail
    for path in cache.glob("*.choice.json"):  # every candidate reads its graph again (a choice of eager reads none)
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="app.runtimes.cache"), serve(tmp_path / "store", cache) as client:
        body = wait_until_loaded(client)
        again = answers(client)
    assert body["models"][0]["status"] == "ready"
    for row, expected in zip(again, first, strict=True):  # the runtime chosen may differ: equal to float32's error
        assert row == pytest.approx(expected, abs=1e-5)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2, caplog.text
    assert all("does not match the recorded" in m and "exporting again" in m for m in refused), refused
    assert {path: path.read_bytes() for path in graphs} == whole  # rebuilt whole
