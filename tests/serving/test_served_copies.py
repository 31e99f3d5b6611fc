"""The copies workers keep of the versions they serve: what a later worker loads when the store's version fails,
and a replacement worker that loads before it accepts (in process here; with real workers in
tests/serving/test_workers.py::test_a_replacement_serves_its_siblings_version_while_the_store_is_corrupt)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.serving import create_app
from app.serving.served_copies import ServedCopies
from app.store import ModelStore, read_manifest
from tests.server import eventually_async
from tests.serving.conftest import digit_png, fast_settings
from tests.serving.test_faults import PNG, POLL_S, half_written_weights, served_version, version


@asynccontextmanager
async def worker(store: Path, copies: Path, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """One worker's app (poll mode) on ``store``, keeping copies in ``copies``, its lifespan started."""
    settings = fast_settings(store, model_control="poll", model_poll_s=POLL_S)
    app = create_app(settings, served_copies=copies, **options)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            yield client


async def index(client: httpx.AsyncClient) -> dict[str, Any]:
    return next(m for m in (await client.post("/v2/repository/index", json={})).json() if m["name"] == "m")


async def test_a_later_worker_serves_the_kept_version_while_the_store_is_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, copies = tmp_path / "store", tmp_path / "copies"
    folder = version(store, "1", seed=3)
    caplog.set_level(logging.INFO, logger="app.serving")
    async with worker(store, copies) as first:
        await eventually_async(lambda: served_version(first), "version 1 serving", 60)
        half_written_weights(folder)  # version 2's manifest, its weights cut short
        async with worker(store, copies) as later:
            await eventually_async(lambda: served_version(later), "the later worker serving", 60)
            assert await served_version(later) == "1"
            entry = await index(later)
            assert (entry["version"], entry["state"]) == ("1", "READY")
            assert "sha256 mismatch" in entry["reason"] or "weights" in entry["reason"], entry
            assert any("the store's version fails" in r.getMessage() for r in caplog.records)
            version(store, "2", seed=5)  # the store is good again: both follow it
            await eventually_async(lambda: _is_version(first, "2"), "version 2 serving in the first", 30)
            await eventually_async(lambda: _is_version(later, "2"), "version 2 serving in the later", 30)
            assert (await index(later)).get("reason", "") == ""
    kept = ServedCopies(copies).latest("m")
    assert kept is not None and read_manifest(kept, store=ModelStore(kept.parent)).version == "2"


async def _is_version(client: httpx.AsyncClient, expected: str) -> bool:
    return await served_version(client) == expected


async def test_with_no_copy_a_failing_store_is_a_failed_model(tmp_path: Path) -> None:
    store, copies = tmp_path / "store", tmp_path / "copies"
    half_written_weights(version(store, "1", seed=3))
    async with worker(store, copies, load_before_serving=True) as client:
        entry = await index(client)
        assert entry["state"] == "UNAVAILABLE", entry
        answer = await client.post("/predict?model=m", content=digit_png(1), headers=PNG)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_failed", answer.text
    assert ServedCopies(copies).latest("m") is None


async def test_a_replacement_has_loaded_its_models_when_its_start_up_ends(tmp_path: Path) -> None:
    store = tmp_path / "store"
    version(store, "1", seed=3)
    async with worker(store, tmp_path / "copies", load_before_serving=True) as client:
        ready = await client.get("/readyz")  # the first request after start-up: no wait
        assert ready.status_code == 200, ready.text
        assert await served_version(client) == "1"


def test_a_copy_is_kept_only_if_it_is_what_was_loaded(tmp_path: Path) -> None:
    store, copies = tmp_path / "store", ServedCopies(tmp_path / "copies")
    one = read_manifest(version(store, "1", seed=3))
    copies.keep("m", store / "m", one, ModelStore(store))
    two = read_manifest(version(store, "2", seed=5))
    copies.keep("m", store / "m", one, ModelStore(store))  # loaded as version 1, the store now holds 2
    kept = copies.latest("m")
    assert kept is not None
    assert read_manifest(kept, store=ModelStore(kept.parent)).version == "1"
    copies.keep("m", store / "m", two, ModelStore(store))
    three = read_manifest(version(store, "3", seed=7))
    copies.keep("m", store / "m", three, ModelStore(store))
    kept = copies.latest("m")
    assert kept is not None and read_manifest(kept, store=ModelStore(kept.parent)).version == "3"
    held = sorted(p.name for p in (tmp_path / "copies" / "m").iterdir() if p.is_dir())
    assert len(held) == 2  # the latest and the one before it, for a worker reading it at that moment
