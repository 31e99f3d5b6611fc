"""A replica's startup: held until its store has loaded, then the app's own readiness rule decides."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import CollectorRegistry

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")

from app.serving import create_app
from app.serving.ray.startup import ReplicaNotReady, wait_until_loaded, waiting_lifespan
from tests.serving.conftest import fast_settings


async def test_startup_returns_once_every_model_has_loaded(store: Path) -> None:
    """Two models load one after the other: the lifespan's startup returns only when neither is loading."""
    app = create_app(fast_settings(store), registry=CollectorRegistry())
    entered: list[str] = []  # the models' statuses when the context after the wait was entered

    @contextlib.asynccontextmanager
    async def after_the_wait() -> AsyncIterator[None]:
        entered.append(",".join(sorted(e.status for e in app.state.models.entries.values())))
        yield

    app.router.lifespan_context = waiting_lifespan(app.router.lifespan_context, after_the_wait)
    async with LifespanManager(app, startup_timeout=60):
        statuses = {name: entry.status for name, entry in app.state.models.entries.items()}
        assert statuses == {"annealed": "ready", "linear": "ready"}
        assert entered == ["ready,ready"]


async def test_wait_returns_the_apps_readiness_answer(store: Path) -> None:
    app = create_app(fast_settings(store), registry=CollectorRegistry())
    async with LifespanManager(app, startup_timeout=60):
        answer = await wait_until_loaded(app)
    assert answer["status"] == "ready" and sorted(answer["models"]) == ["annealed", "linear"]


async def test_a_store_that_serves_nothing_fails_the_replica_with_the_reasons(
    tmp_path: Path, annealed_store: Path
) -> None:
    shutil.copytree(annealed_store / "annealed", tmp_path / "tampered")
    weights = tmp_path / "tampered" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    app = create_app(fast_settings(tmp_path), registry=CollectorRegistry())
    app.router.lifespan_context = waiting_lifespan(app.router.lifespan_context)
    with pytest.raises(ReplicaNotReady, match=r"not ready once loading finished: .*failed models: tampered: .*sha256"):
        async with LifespanManager(app, startup_timeout=60):
            pass
