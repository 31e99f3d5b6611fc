"""Concurrent requests through the ASGI app: shared batches, same answers, full queue, deadline, bad neighbours."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from torch import nn

from app.serving import create_app
from app.serving.metrics import FORWARD_PATHS as PATHS
from tests.server import eventually_async
from tests.serving.conftest import digit_png, fast_settings

PNG = {"content-type": "image/png"}


@asynccontextmanager
async def serving(store: Path, **overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(fast_settings(store, **overrides))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(1500):
                models = (await client.get("/models")).json()["models"]
                if all(m["status"] == "ready" for m in models):
                    break
                await asyncio.sleep(0.02)
            else:
                raise TimeoutError(f"models not ready: {models}")
            yield app, client


def sample(app: FastAPI, name: str, **labels: str) -> float:
    return app.state.metrics.registry.get_sample_value(name, labels) or 0.0


class Gate(nn.Module):
    """Wraps a network so that a test decides when its forward passes may run."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.open = threading.Event()
        self.entered = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.open.wait(10), "gate never opened"
        return self.inner(x)


def gate_variant(app: FastAPI, model: str, variant: str) -> Gate:
    batcher = app.state.models.entries[model].variants[variant].batcher
    gate = Gate(batcher.runtime)
    batcher.runtime = gate
    return gate


@pytest.mark.parametrize("variant", ["collapsed", "original"])
async def test_concurrent_requests_share_a_batch_and_match_sequential_answers(store: Path, variant: str) -> None:
    collapsed = str(variant == "collapsed").lower()
    url = f"/predict?model=linear&collapsed={collapsed}&top_k=5"
    images = [digit_png(seed) for seed in range(12)]
    # inline_max_forward_us=0: every variant batched, however cheap (the inline path is tested below)
    async with serving(store, max_batch_size=16, max_wait_ms=250.0, inline_max_forward_us=0) as (app, client):
        concurrent = await asyncio.gather(*(client.post(url, content=data, headers=PNG) for data in images))
        labels = {"model": "linear", "variant": variant}
        batches, batched_images = (
            sample(app, "foldserve_batch_size_count", **labels),
            sample(app, "foldserve_batch_size_sum", **labels),
        )
        sequential = [await client.post(url, content=data, headers=PNG) for data in images]
    assert [r.status_code for r in concurrent + sequential] == [200] * 24, [r.text for r in concurrent + sequential]
    assert batched_images == 12
    assert batches < 12, f"12 concurrent requests ran in {batches} batches: none was shared"
    for together, alone in zip(concurrent, sequential, strict=True):
        a, b = together.json()["predictions"][0], alone.json()["predictions"][0]
        assert a["index"] == b["index"]
        for x, y in zip(a["top_k"], b["top_k"], strict=True):
            assert x["index"] == y["index"]
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)
    assert max(r.json()["timings_ms"]["queue"] for r in concurrent) > 0


@pytest.mark.parametrize(("threshold_us", "expected"), [(0.0, "batched"), (1e9, "inline")])
async def test_the_path_follows_the_forward_pass_measured_at_load(
    store: Path, threshold_us: float, expected: str
) -> None:
    async with serving(store, inline_max_forward_us=threshold_us, max_wait_ms=50.0) as (app, client):
        model = (await client.get("/models/linear")).json()
        answers = await asyncio.gather(
            *(client.post("/predict?model=linear", content=digit_png(seed), headers=PNG) for seed in range(6))
        )
        labels = {"model": "linear", "variant": "collapsed"}
        passes = {path: sample(app, "foldserve_forward_passes_total", **labels, path=path) for path in PATHS}
        inline_gauge = sample(app, "foldserve_inline", **labels)
    assert [a.status_code for a in answers] == [200] * 6
    assert model["variants"]["collapsed"]["path"] == model["variants"]["original"]["path"] == expected
    assert inline_gauge == (expected == "inline")
    if expected == "inline":  # one pass per request, none through the queue
        assert passes == {"inline": 6, "batched": 0}
    else:
        assert passes["inline"] == 0 and 1 <= passes["batched"] <= 6


async def test_the_affine_map_runs_inline_and_the_original_is_batched_by_default(store: Path) -> None:
    async with serving(store, inline_max_forward_us=250.0) as (app, client):
        entry = app.state.models.entries["linear"]
        latency = entry.loaded.latency_s
        model = (await client.get("/models/linear")).json()
    for variant in ("collapsed", "original"):
        expected = "inline" if latency[variant] * 1e6 <= 250.0 else "batched"
        assert model["variants"][variant]["path"] == expected, latency
    assert model["variants"]["collapsed"]["path"] == "inline", latency  # the affine map takes microseconds


async def test_full_queue_answers_503_with_retry_after(annealed_store: Path) -> None:
    settings = {"max_batch_size": 1, "max_wait_ms": 0.0, "max_queue_size": 2, "max_images_per_request": 1}
    # batched, however fast its runtime: the gate holds the batcher's thread, never the event loop
    async with serving(annealed_store, **settings, inline_max_forward_us=0) as (app, client):
        gate = gate_variant(app, "annealed", "collapsed")
        batcher = app.state.models.entries["annealed"].variants["collapsed"].batcher
        post = lambda: client.post("/predict?model=annealed", content=digit_png(), headers=PNG)  # noqa: E731
        running = asyncio.ensure_future(post())
        await eventually_async(gate.entered.is_set, "the first request inside the (held) forward pass")
        waiting = [asyncio.ensure_future(post()) for _ in range(2)]
        await eventually_async(lambda: batcher.queue_depth == 2, "the next two filling the queue")
        refused = await post()
        gate.open.set()
        answers = await asyncio.gather(running, *waiting)
        rejected = sample(app, "foldserve_rejections_total", model="annealed", variant="collapsed", reason="queue_full")
        after = await post()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "queue_full"
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert rejected == 1
    assert after.status_code == 200


async def test_deadline_answers_504(annealed_store: Path) -> None:
    async with serving(annealed_store, request_timeout_s=0.2, max_wait_ms=0.0, inline_max_forward_us=0) as (
        app,
        client,
    ):
        gate = gate_variant(app, "annealed", "original")
        late = await client.post("/predict?model=annealed&collapsed=false", content=digit_png(), headers=PNG)
        gate.open.set()
        timed_out = sample(app, "foldserve_rejections_total", model="annealed", variant="original", reason="deadline")
        counted = sample(
            app, "foldserve_requests_total", model="annealed", variant="original", protocol="predict", status="504"
        )
        after = await client.post("/predict?model=annealed&collapsed=false", content=digit_png(), headers=PNG)
    assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
    assert timed_out == 1 and counted == 1
    assert after.status_code == 200


async def test_a_bad_image_fails_only_its_own_request(annealed_store: Path) -> None:
    bodies = [digit_png(1), digit_png(2), b"not an image", digit_png(3), digit_png(4)]
    async with serving(annealed_store, max_wait_ms=100.0) as (_, client):
        alone = [
            await client.post("/predict?model=annealed", content=b, headers=PNG) for b in bodies if b[:1] == b"\x89"
        ]
        together = await asyncio.gather(
            *(client.post("/predict?model=annealed", content=b, headers=PNG) for b in bodies)
        )
    assert [r.status_code for r in together] == [200, 200, 400, 200, 200]
    good = [r for r in together if r.status_code == 200]
    for a, b in zip(good, alone, strict=True):
        assert a.json()["predictions"][0]["index"] == b.json()["predictions"][0]["index"]


async def test_full_queue_refuses_before_decoding(annealed_store: Path) -> None:
    settings = {"max_batch_size": 1, "max_wait_ms": 0.0, "max_queue_size": 1, "max_images_per_request": 1}
    async with serving(annealed_store, **settings, inline_max_forward_us=0) as (app, client):
        gate = gate_variant(app, "annealed", "collapsed")
        batcher = app.state.models.entries["annealed"].variants["collapsed"].batcher
        running = asyncio.ensure_future(client.post("/predict?model=annealed", content=digit_png(), headers=PNG))
        await eventually_async(gate.entered.is_set, "the first request inside the forward pass")
        waiting = asyncio.ensure_future(client.post("/predict?model=annealed", content=digit_png(), headers=PNG))
        await eventually_async(lambda: batcher.queue_depth == 1, "one image queued")
        # a corrupt image would be a 400 if it were decoded: the 503 shows it was refused first
        refused = await client.post("/predict?model=annealed", content=b"\x89PNG broken", headers=PNG)
        gate.open.set()
        answers = await asyncio.gather(running, waiting)
        decoded = sample(app, "foldserve_decode_duration_seconds_count", model="annealed", variant="collapsed")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"
    assert [a.status_code for a in answers] == [200, 200]
    assert decoded == 2
