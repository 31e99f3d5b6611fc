"""The running service the fuzz tests send their examples to, the log they watch, and the answers they expect.

:class:`LiveApp` is one app per test module: ``create_app`` on a tiny store, its lifespan and an
``httpx.AsyncClient`` over ``ASGITransport`` in an event loop on a thread of its own (so each example is one
call with a real timeout: a hang fails the example instead of the run), and the app's gRPC server on a free
loopback port, reached over a real socket. :class:`ErrorLog` collects every ERROR record and every record with a
traceback. :func:`check_outputs` compares an answer with the model's own output, computed here in float64.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import torch
from asgi_lifespan import LifespanManager
from hypothesis import event

from app.serving import create_app
from app.serving.errors import BadRequest, PayloadTooLarge
from app.serving.images import decode_image
from app.serving.v2.messages import InputTensor
from app.store import load_checkpoint
from tests.serving.conftest import LABELS, fast_settings, write_checkpoint
from tests.serving.v2.fuzz_strategies import MAX_IMAGES, MODEL, Case

Drawn = TypeVar("Drawn", bound=Case)

__all__ = [
    "CALL_TIMEOUT_S",
    "MAX_BODY",
    "ErrorLog",
    "LiveApp",
    "Reference",
    "check_outputs",
    "live_app",
    "refused_or_decoded",
]

CALL_TIMEOUT_S = 20.0
"""The most one example's call may take; beyond it the example fails as a hang."""
MAX_BODY = 256 * 1024


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, or with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def take(self) -> list[str]:
        """The records collected since the last call, formatted (with their tracebacks), and forget them."""
        taken, self.records = self.records, []
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        return [formatter.format(record) for record in taken]


class Reference:
    """The model's own answers: the checkpoint's network in float64."""

    def __init__(self, folder: Path) -> None:
        self.manifest, network = load_checkpoint(folder)
        self.network = network.double().eval()

    def logits(self, tensor: InputTensor) -> torch.Tensor:
        """The logits for a parsed input: ``input`` as it is, ``image`` decoded as the service decodes it."""
        if tensor.name == "image":
            assert isinstance(tensor.data, tuple)
            x = torch.stack([decode_image(blob, self.manifest.input, max_pixels=10**6) for blob in tensor.data])
        else:
            assert isinstance(tensor.data, torch.Tensor)
            x = tensor.data
        with torch.no_grad():
            return self.network(x.double())


def check_outputs(
    outputs: Sequence[tuple[str, str, Sequence[int], Any]], requested: Sequence[dict[str, Any]], logits: torch.Tensor
) -> None:
    """Compare an answer's outputs (name, datatype, shape, flat data) with the model's ``logits`` (float64).

    Tensors must be within 1e-4 of the output scale (the tolerance the collapse was verified to); a
    classification's strings must name classes in order of the reference values (ties within the tolerance
    either way).
    """
    names = [o["name"] for o in requested] or ["logits", "probabilities"]
    assert [name for name, *_ in outputs] == names, (outputs, requested)
    rows = logits.shape[0]
    values = {"logits": logits, "probabilities": torch.softmax(logits, dim=1)}
    tolerance = {"logits": 1e-4 * max(1.0, logits.abs().max().item()), "probabilities": 1e-4}
    wanted = {o["name"]: o.get("parameters", {}).get("classification", 0) for o in requested}
    for name, datatype, shape, data in outputs:
        expected, atol = values[name], tolerance[name]
        count = wanted.get(name, 0)
        if not count:
            assert (datatype, list(shape)) == ("FP32", [rows, len(LABELS)])
            actual = torch.as_tensor(np.asarray(data, dtype=np.float64)).reshape(rows, len(LABELS))
            torch.testing.assert_close(actual, expected, rtol=0, atol=atol)
            continue
        k = min(count, len(LABELS))
        assert (datatype, list(shape)) == ("BYTES", [rows, k])
        strings = [s.decode() if isinstance(s, bytes) else s for s in data]
        for row in range(rows):
            previous = float("inf")
            for entry in strings[row * k : (row + 1) * k]:
                value, index, label = entry.split(":", 2)
                assert label == LABELS[int(index)]
                reference = expected[row, int(index)].item()
                assert abs(float(value) - reference) <= atol + 1e-6, (entry, reference)
                assert reference <= previous + 2 * atol, f"{entry} ranked below a lower class"
                previous = reference


class LiveApp:
    """The app on ``store`` with gRPC on ``grpc_port``, running in a thread's event loop until :meth:`close`."""

    def __init__(self, store: Path, grpc_port: int) -> None:
        settings = fast_settings(
            store,
            grpc_port=grpc_port,
            max_images_per_request=MAX_IMAGES,
            max_body_bytes=MAX_BODY,
            request_timeout_s=10.0,
        )
        self.app = create_app(settings)
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-app", daemon=True)
        self.thread.start()
        self._stack = contextlib.AsyncExitStack()
        self.client: httpx.AsyncClient = self._run(self._start(), timeout=120)

    async def _start(self) -> httpx.AsyncClient:
        manager = await self._stack.enter_async_context(LifespanManager(self.app, startup_timeout=60))
        transport = httpx.ASGITransport(app=manager.app)
        client = await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://fuzz", timeout=CALL_TIMEOUT_S)
        )
        for _ in range(1200):
            if (await client.get(f"/v2/models/{MODEL}/ready")).status_code == 200:
                return client
            await asyncio.sleep(0.05)
        raise TimeoutError(f"model {MODEL} not ready within 60 s: {(await client.get('/models')).text}")

    def _run(self, coroutine: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self.loop)
        return future.result(timeout + 5)

    def post(self, path: str, body: bytes, headers: dict[str, bytes]) -> httpx.Response:
        """One POST, answered within :data:`CALL_TIMEOUT_S` or a ``TimeoutError``."""
        return self._run(self.client.post(path, content=body, headers=headers))  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._stack.aclose(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@contextlib.contextmanager
def live_app(root: Path, grpc_port: int) -> Iterator[tuple[LiveApp, Reference, ErrorLog]]:
    """A tiny linear model's store under ``root``, the app serving it, its reference and the error log."""
    folder = write_checkpoint(root, MODEL, kind="linear")
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    served = LiveApp(root, grpc_port)
    try:
        errors.take()  # loading may warn; only what the examples cause counts
        yield served, Reference(folder), errors
    finally:
        served.close()
        logging.getLogger().removeHandler(errors)


def refused_or_decoded(case: Drawn, parse: Callable[[], object], decoded_as_sent: Callable[[Drawn], None]) -> None:
    """A parser's property: ``parse()`` refuses ``case`` with a message (only if it is not valid), or accepts it
    (only if no mutation broke it), and a valid case decodes to what was sent."""
    try:
        parse()
    except (BadRequest, PayloadTooLarge) as refusal:
        event("refused")
        assert not case.valid, f"a valid request was refused: {refusal.message}"
        assert refusal.message
        return
    assert not case.broken, f"accepted although {case.mutations[0]}"
    event("accepted (valid)" if case.valid else "accepted")
    if case.valid:
        decoded_as_sent(case)
