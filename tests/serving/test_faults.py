"""Faults at the edges of a serving process: the model store changing under a poll-mode server, and SIGTERM in
the middle of a reload. Each test ends with the service serving (or, for SIGTERM, gone cleanly) and the log
line that says why.

Already tested elsewhere: a failed reload through the repository API keeps the served version
(tests/serving/test_repository.py::test_a_failed_reload_keeps_the_served_version), polling loads a new folder
and unloads a removed one (::test_polling_follows_the_store), SIGTERM drains slow uploads
(tests/serving/test_hostile.py) and requests in flight with several workers (tests/serving/test_workers.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

import app.serving.registry as registry_module
from app.serving import create_app
from app.store import InputSpec, save_checkpoint
from tests.server import Server, eventually, eventually_async
from tests.serving.conftest import LABELS, MEAN, SIZE, STD, build_model, digit_png, fast_settings

PNG = {"content-type": "image/png"}
POLL_S = 0.05


def version(store: Path, number: str, seed: int, name: str = "m") -> Path:
    """Write ``name`` as version ``number`` of a linear model with weights from ``seed``."""
    spec = InputSpec(channels=1, height=SIZE, width=SIZE, mean=[MEAN], std=[STD])
    shutil.rmtree(store / name, ignore_errors=True)
    save_checkpoint(store / name, build_model("linear", seed), name=name, input=spec, labels=LABELS, version=number)
    return store / name


@asynccontextmanager
async def polling(store: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fast_settings(store, model_control="poll", model_poll_s=POLL_S))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            await eventually_async(lambda: served_version(client), "m serving", 60)
            yield client


async def served_version(client: httpx.AsyncClient) -> str | None:
    """The version of ``m`` that answers, None while it does not."""
    answer = await client.post("/predict?model=m", content=digit_png(1), headers=PNG)
    if answer.status_code != 200:
        return None
    return str((await client.get("/v2/models/m")).json()["versions"][0])


def logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    return lambda: any(text in record.getMessage() for record in caplog.records)


def half_written_weights(folder: Path) -> None:
    """Version 2's manifest in place, its weights a third copied: a copy caught in the middle."""
    weights = (folder / "weights.safetensors").read_bytes()
    version(folder.parent, "2", seed=5)
    new = (folder / "weights.safetensors").read_bytes()
    assert new != weights
    (folder / "weights.safetensors").write_bytes(new[: len(new) // 3])


def half_written_manifest(folder: Path) -> None:
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text[: len(text) // 2])


def weights_removed(folder: Path) -> None:
    (folder / "weights.safetensors").unlink()


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "weights half written": (half_written_weights, "loading m again failed; the version served stays"),
    "manifest half written": (half_written_manifest, "loading m again failed; the version served stays"),
    "weights removed": (weights_removed, "loading m again failed; the version served stays"),
    "manifest removed": (lambda folder: (folder / "manifest.json").unlink(), "m has no manifest.json"),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_a_broken_model_folder_keeps_the_last_good_version_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: tuple[Callable[[Path], None], str]
) -> None:
    damage, line = fault
    folder = version(tmp_path, "1", seed=3)
    caplog.set_level(logging.INFO, logger="app.serving")
    async with polling(tmp_path) as client:
        damage(folder)
        await eventually_async(logged(caplog, line), f"the log saying {line!r}", 30)
        for _ in range(3):  # several polls later: still the last good version, and no second attempt
            assert await served_version(client) == "1"
        attempts = sum("is new or changed, loading it" in r.getMessage() for r in caplog.records)
        version(tmp_path, "2", seed=5)  # the copy completes
        await eventually_async(lambda: _is(served_version(client), "2"), "version 2 serving", 30)
    assert attempts <= 1


async def _is(value: Any, expected: str) -> bool:
    return (await value) == expected


async def test_a_store_that_vanishes_for_a_while_is_followed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    version(store, "1", seed=3)
    async with polling(store) as client:
        store.rename(tmp_path / "away")  # an unmounted volume, a symlink swapped badly
        await eventually_async(logged(caplog, "cannot be read"), "the log saying the store cannot be read", 30)
        assert await served_version(client) == "1"
        (tmp_path / "away").rename(store)
        version(store, "2", seed=5)
        await eventually_async(lambda: _is(served_version(client), "2"), "version 2 serving", 30)


async def test_a_change_made_while_the_first_load_runs_is_loaded_at_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 is written while version 1 still loads (after it was read): the server must not take the store
    as it finds it after the first loads for what it serves (it did: version 1 served until the next change)."""
    version(tmp_path, "1", seed=3)
    loaded, release = threading.Event(), threading.Event()
    real_load = registry_module.load_model

    def gated(*args: Any) -> Any:
        model = real_load(*args)
        if not loaded.is_set():
            loaded.set()
            release.wait(timeout=60)
        return model

    monkeypatch.setattr(registry_module, "load_model", gated)
    app = create_app(fast_settings(tmp_path, model_control="poll", model_poll_s=POLL_S))
    try:
        async with LifespanManager(app, startup_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                await eventually_async(loaded.is_set, "version 1 read", 60)
                version(tmp_path, "2", seed=5)
                release.set()
                await eventually_async(lambda: _is(served_version(client), "2"), "version 2 serving", 30)
    finally:
        release.set()


GATE = '''
import os, pathlib, time
import app.serving.registry as registry

_real, _gate = registry.load_model, pathlib.Path(os.environ["TEST_LOAD_GATE"])

def load_model(*args):
    """A load that takes minutes once the test has put the file 'hold' in the gate folder."""
    if (_gate / "hold").exists():
        (_gate / "entered").touch()
        time.sleep(120)
    return _real(*args)

registry.load_model = load_model
'''


@pytest.mark.slow
def test_sigterm_during_a_slow_reload_exits_cleanly_within_the_drain_time(tmp_path: Path) -> None:
    version(tmp_path / "store", "1", seed=3)
    site, gate = tmp_path / "site", tmp_path / "gate"
    site.mkdir()
    gate.mkdir()
    (site / "sitecustomize.py").write_text(GATE)
    env = {
        "FOLDSERVE_DRAIN_S": "3",
        "FOLDSERVE_ADMIN_TOKEN": "t0ken",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "TEST_LOAD_GATE": str(gate),
    }
    with Server(tmp_path / "store", tmp_path / "server.log", env) as running:
        (gate / "hold").touch()
        reload = threading.Thread(
            target=lambda: httpx.post(
                f"{running.url}/v2/repository/models/m/load", headers={"authorization": "Bearer t0ken"}, timeout=60
            ),
            daemon=True,
        )
        reload.start()
        eventually(lambda: (gate / "entered").exists(), "the reload inside the (slow) load")
        assert httpx.post(f"{running.url}/predict?model=m", content=digit_png(1), headers=PNG).status_code == 200
        stopping = time.monotonic()
        os.kill(running.pid, signal.SIGTERM)
        assert running.process is not None
        code = running.process.wait(timeout=60)
        took = time.monotonic() - stopping
    log = (tmp_path / "server.log").read_text()
    assert code == 0, log[-2000:]
    assert took < 3 + 3, f"took {took:.1f} s to exit with a drain time of 3 s"
    assert "Shutting down" in log and "Finished server process" in log, log[-2000:]
    # the reload was still running at the end of the drain: uvicorn cut it and says so
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in log, log[-2000:]
