"""The model repository at runtime: load, reload under load, failed loads, unload, polling, and the token."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.serving import create_app
from app.store import save_checkpoint
from tests.server import eventually_async
from tests.serving.conftest import LABELS, MEAN, SIZE, STD, build_model, digit_png, fast_settings, write_checkpoint

PNG = {"content-type": "image/png"}
TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def serving(store: Path, **overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(fast_settings(store, **{"admin_token": TOKEN, **overrides}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            await until(client, lambda index: all(m["state"] != "LOADING" for m in index))
            yield app, client


async def until(client: httpx.AsyncClient, condition: Any, timeout: float = 60) -> None:
    async def reached() -> bool:
        return bool(condition((await client.get("/v2/repository/index")).json()))

    await eventually_async(reached, "the repository reaching the state", timeout)


def version(store: Path, name: str, number: str, seed: int) -> None:
    """Write ``name`` as version ``number`` of a linear model with weights from ``seed``."""
    from app.store import InputSpec

    spec = InputSpec(channels=1, height=SIZE, width=SIZE, mean=[MEAN], std=[STD])
    shutil.rmtree(store / name, ignore_errors=True)
    save_checkpoint(store / name, build_model("linear", seed), name=name, input=spec, labels=LABELS, version=number)


async def predict(client: httpx.AsyncClient, model: str = "m", seed: int = 1) -> httpx.Response:
    return await client.post(f"/predict?model={model}&top_k=5", content=digit_png(seed), headers=PNG)


async def test_load_and_unload_need_the_token_and_change_nothing_without_it(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "m")
    async with serving(tmp_path) as (_, client):
        missing = await client.post("/v2/repository/models/m/unload")
        wrong = await client.post("/v2/repository/models/m/unload", headers={"authorization": "Bearer nope"})
        still = await predict(client)
    async with serving(tmp_path, admin_token=None) as (_, client):
        off = await client.post("/v2/repository/models/m/unload", headers=AUTH)
        served = await predict(client)
    assert missing.status_code == wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert off.status_code == 403 and "FOLDSERVE_ADMIN_TOKEN" in off.text
    assert still.status_code == served.status_code == 200


async def test_a_new_folder_loads_at_runtime(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "m")
    async with serving(tmp_path) as (_, client):
        before = await predict(client, "late")
        version(tmp_path, "late", "1", seed=5)
        listed = await client.get("/v2/repository/index")
        loaded = await client.post("/v2/repository/models/late/load", headers=AUTH)
        after = await predict(client, "late")
        absent = await client.post("/v2/repository/models/nothing-here/load", headers=AUTH)
        bad_name = await client.post("/v2/repository/models/..%2Fm/load", headers=AUTH)
    assert before.status_code == 404
    assert {"name": "late", "version": None, "state": "UNAVAILABLE", "reason": "not loaded"} in listed.json()
    assert loaded.status_code == 200 and loaded.json() == {"name": "late", "state": "READY"}
    assert after.status_code == 200
    assert absent.status_code == 404
    assert bad_name.status_code in (404, 422)


async def test_a_reload_under_load_drops_no_request(tmp_path: Path) -> None:
    version(tmp_path, "m", "1", seed=1)
    async with serving(tmp_path, max_wait_ms=0.0) as (_, client):
        first = (await predict(client)).json()["predictions"][0]["top_k"]
        version(tmp_path, "m", "2", seed=2)
        stop = asyncio.Event()
        statuses: list[int] = []

        async def load() -> None:
            while not stop.is_set():
                statuses.append((await predict(client, seed=len(statuses))).status_code)
                await asyncio.sleep(0)  # in-process, an inline answer never waits on a socket: let others run

        clients = [asyncio.ensure_future(load()) for _ in range(8)]
        await eventually_async(lambda: len(statuses) >= 16, "answers before the reload")
        reloaded = await client.post("/v2/repository/models/m/load", headers=AUTH)
        during = len(statuses)
        await eventually_async(lambda: len(statuses) >= during + 16, "answers after the reload")
        stop.set()
        await asyncio.gather(*clients)
        second = (await predict(client)).json()["predictions"][0]["top_k"]
        model = (await client.get("/models/m")).json()
    assert reloaded.status_code == 200, reloaded.text
    assert len(statuses) > 20 and statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
    assert model["version"] == "2"
    assert first != second  # the new weights answer


async def test_a_failed_reload_keeps_the_served_version(tmp_path: Path) -> None:
    version(tmp_path, "m", "1", seed=1)
    async with serving(tmp_path) as (_, client):
        version(tmp_path, "m", "2", seed=2)
        weights = tmp_path / "m" / "weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # its sha256 no longer matches
        failed = await client.post("/v2/repository/models/m/load", headers=AUTH)
        served = await predict(client)
        model = (await client.get("/models/m")).json()
        (entry,) = [m for m in (await client.get("/v2/repository/index")).json() if m["name"] == "m"]
    assert failed.status_code == 400 and "sha256 mismatch" in failed.text
    assert served.status_code == 200
    assert model["status"] == "ready" and model["version"] == "1" and "sha256 mismatch" in model["last_error"]
    assert entry["state"] == "READY" and "sha256 mismatch" in entry["reason"]


async def test_unload_then_load_again(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "m")
    async with serving(tmp_path) as (app, client):
        unloaded = await client.post("/v2/repository/models/m/unload", headers=AUTH)
        refused = await predict(client)
        index = await client.get("/v2/repository/index")
        ready_gauge = app.state.metrics.registry.get_sample_value("foldserve_model_ready", {"model": "m"})
        again = await client.post("/v2/repository/models/m/load", headers=AUTH)
        served = await predict(client)
    assert unloaded.json() == {"name": "m", "state": "UNAVAILABLE"}
    assert refused.status_code == 404 and "unloaded" in refused.text
    assert index.json() == [{"name": "m", "version": None, "state": "UNAVAILABLE", "reason": "unloaded at runtime"}]
    assert ready_gauge == 0
    assert again.status_code == 200 and served.status_code == 200


async def test_polling_follows_the_store(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "m")
    async with serving(tmp_path, model_control="poll", model_poll_s=0.1) as (_, client):
        version(tmp_path, "added", "1", seed=3)
        await until(client, lambda index: {"name": "added", "version": "1", "state": "READY", "reason": ""} in index)
        added = await predict(client, "added")
        shutil.rmtree(tmp_path / "m")
        await until(client, lambda index: any(m["name"] == "m" and m["state"] == "UNAVAILABLE" for m in index))
        removed = await predict(client, "m")
    assert added.status_code == 200
    assert removed.status_code == 404


async def test_several_workers_refuse_explicit_calls(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "m")
    async with serving(tmp_path, workers=2) as (_, client):
        refused = await client.post("/v2/repository/models/m/unload", headers=AUTH)
    assert refused.status_code == 409 and "FOLDSERVE_MODEL_CONTROL=poll" in refused.text


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_index_is_open(tmp_path: Path, method: str) -> None:
    write_checkpoint(tmp_path, "m")
    async with serving(tmp_path) as (_, client):
        index = await client.request(method, "/v2/repository/index")
    assert index.status_code == 200 and index.json()[0]["state"] == "READY"
