"""The soak-with-faults client: one request over ``/predict``, v2 REST (JSON or the binary tensor extension) or gRPC
``ModelInfer`` to one model of the store, its answer's top label checked, and an open-loop pacer that records every
request.

Eight series: each protocol with ``collapsed`` true and false. ``/predict`` sends a digit's PNG; v2 REST and gRPC
send the same digit as an FP32 tensor (the PNG resized to the model's input and normalised). Requests go
to the store's models in turn; a model with an input over 100,000 values (an ImageNet ResNet's 3 x 224 x 224) gets
no v2 JSON requests, whose encoding of 150,000 floats would cost the client, on the same cores, more than the
server's answer. Expected labels are the quiet server's answers, per series, model and digit, taken once before any
load; a digit whose two best logits lie within ``MIN_MARGIN`` of the logits' range for a model (a network with
random weights can have near ties, which the runtimes' float32 rounding, verified to 1e-4, might swap) is left
out for that model, and the report says so.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from PIL import Image

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc

__all__ = ["SERIES", "Client", "Record", "load_digits"]

SERIES = tuple(f"{p}:{v}" for p in ("predict", "v2json", "v2binary", "grpc") for v in ("collapsed", "original"))
"""Every protocol and variant the load mixes, ``PROTOCOL:VARIANT``."""

TIMEOUT_S = 15.0  # beyond the server's 10 s request deadline: a request with no answer by then is lost
KEEPALIVE_S = 4.0  # below uvicorn's 5 s keep-alive timeout: a client must drop an idle connection before the server
MAX_JSON_VALUES = 100_000
MIN_MARGIN = 1e-3


@dataclass
class Record:
    """One request: start (seconds since the run's origin), series, model, digit, status and latency (seconds).

    ``status`` is the HTTP status, the gRPC code's name, or ``no answer: ERROR`` when nothing came back.
    """

    start: float
    series: str
    model: str
    digit: int
    status: str
    latency: float
    label: str | None = None
    wrong: bool = False
    in_flight_at_kill: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def load_digits(examples: Path, manifest: dict[str, Any]) -> list[tuple[int, bytes, np.ndarray]]:
    """``(digit, png, tensor [1, C, H, W] float32)`` for each ``examples/digit-N.png``: the tensor is the PNG resized
    to the model's input and normalised (its own series: the server's decoder need not make the same pixels)."""
    spec = manifest["input"]
    mean = np.array(spec["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(spec["std"], dtype=np.float32).reshape(-1, 1, 1)
    out = []
    for n in range(10):
        png = (examples / f"digit-{n}.png").read_bytes()
        image = Image.open(io.BytesIO(png)).convert("L" if spec["channels"] == 1 else "RGB")
        pixels = np.asarray(image.resize((spec["width"], spec["height"])), dtype=np.float32) / 255.0
        pixels = pixels.reshape(spec["height"], spec["width"], spec["channels"]).transpose(2, 0, 1)
        out.append((n, png, ((pixels - mean) / std)[None].astype(np.float32)))
    return out


Digits = list[tuple[int, bytes, np.ndarray]]


class Client:
    """Sends one request of a series to a model and checks its label; :meth:`pace` runs the open-loop load.

    Args:
        base_url: the server's HTTP address. grpc_target: its gRPC ``HOST:PORT``.
        models: each model's name and its digits, from :func:`load_digits`.
    """

    def __init__(self, base_url: str, grpc_target: str, models: dict[str, Digits]):
        self.base_url, self.models = base_url, models
        limits = httpx.Limits(max_connections=256, keepalive_expiry=KEEPALIVE_S)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S, limits=limits)
        self.channel = grpc.aio.insecure_channel(grpc_target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.expected: dict[tuple[str, str, int], str] = {}
        self.left_out: dict[str, list[int]] = {}  # model -> digits with near ties, not sent
        self.cycle: list[tuple[str, str, int]] = []  # (series, model, digit), in the order they are sent
        self.records: list[Record] = []
        self.in_flight: set[int] = set()  # ids of the Records still waiting
        self.origin = time.perf_counter()

    async def close(self) -> None:
        """Close the HTTP pool and the gRPC channel."""
        await self.http.aclose()
        await self.channel.close()

    def series_of(self, model: str) -> list[str]:
        """The series sent to ``model``: all, but v2 JSON for an input of over ``MAX_JSON_VALUES`` values."""
        large = self.models[model][0][2].size > MAX_JSON_VALUES
        return [s for s in SERIES if not (large and s.startswith("v2json"))]

    async def ask(self, series: str, model: str, digit: int) -> tuple[str, str | None]:
        """One request; ``(status, top label or None)``."""
        status, logits, label = await self._ask(series, model, digit)
        if label is None and logits is not None:
            label = str(int(np.argmax(logits)))
        return status, label

    async def _ask(self, series: str, model: str, digit: int) -> tuple[str, np.ndarray | None, str | None]:
        protocol, variant = series.split(":")
        collapsed = variant == "collapsed"
        _, png, tensor = self.models[model][digit]
        if protocol == "predict":
            r = await self.http.post(
                "/predict",
                params={"model": model, "collapsed": str(collapsed).lower(), "top_k": 1},
                content=png,
                headers={"content-type": "image/png"},
            )
            return str(r.status_code), None, r.json()["predictions"][0]["label"] if r.status_code == 200 else None
        if protocol == "v2json":
            body = {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": list(tensor.shape), "data": tensor.ravel().tolist()}
                ],
                "outputs": [{"name": "logits"}],
                "parameters": {"collapsed": collapsed},
            }
            r = await self.http.post(f"/v2/models/{model}/infer", json=body)
            if r.status_code != 200:
                return str(r.status_code), None, None
            return "200", np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32), None
        if protocol == "v2binary":
            raw = tensor.astype("<f4").tobytes()
            document = {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": list(tensor.shape),
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
                "parameters": {"collapsed": collapsed},
            }
            head = json.dumps(document).encode()
            r = await self.http.post(
                f"/v2/models/{model}/infer",
                content=head + raw,
                headers={"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"},
            )
            if r.status_code != 200:
                return str(r.status_code), None, None
            length = int(r.headers["inference-header-content-length"])
            return "200", np.frombuffer(r.content[length:], dtype="<f4"), None
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="input", datatype="FP32", shape=list(tensor.shape))
        request.raw_input_contents.append(tensor.astype("<f4").tobytes())
        request.outputs.add(name="logits")
        request.parameters["collapsed"].bool_param = collapsed
        try:
            answer = await self.stub.ModelInfer(request, timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            return error.code().name, None, None
        return "OK", np.frombuffer(answer.raw_output_contents[0], dtype="<f4"), None

    async def learn_expected(self) -> dict[str, dict[str, dict[int, str]]]:
        """Ask the quiet server every series, model and digit once; its answers become the expected labels, and the
        digits with near ties are left out. Also makes :attr:`cycle`."""
        for model, digits in self.models.items():
            for digit, _, _ in digits:
                for series in self.series_of(model):
                    status, logits, label = await self._ask(series, model, digit)
                    if status not in ("200", "OK"):
                        raise RuntimeError(f"the quiet server answered {series} {model} digit {digit} with {status}")
                    if logits is not None:
                        top = np.sort(logits)[::-1]
                        if top[0] - top[1] < MIN_MARGIN * (top[0] - top[-1]):
                            self.left_out.setdefault(model, []).append(digit)
                        label = str(int(np.argmax(logits)))
                    self.expected[(series, model, digit)] = str(label)
        for model in self.left_out:
            self.left_out[model] = sorted(set(self.left_out[model]))
        for digit in range(10):
            for series in SERIES:
                for model in self.models:
                    if series in self.series_of(model) and digit not in self.left_out.get(model, []):
                        self.cycle.append((series, model, digit))
        return {
            m: {s: {d: self.expected[(s, m, d)] for d, _, _ in digits} for s in self.series_of(m)}
            for m, digits in self.models.items()
        }

    async def one(self, series: str, model: str, digit: int) -> None:
        """Send one request and append its :class:`Record`."""
        record = Record(time.perf_counter() - self.origin, series, model, digit, "pending", 0.0)
        self.records.append(record)
        self.in_flight.add(id(record))
        try:
            record.status, record.label = await self.ask(series, model, digit)
        except Exception as error:  # every failure to answer is a result here
            record.status = f"no answer: {type(error).__name__}"
        finally:
            self.in_flight.discard(id(record))
        record.latency = time.perf_counter() - self.origin - record.start
        record.wrong = record.label is not None and record.label != self.expected[(series, model, digit)]

    def mark_in_flight(self, since: float, until: float) -> int:
        """Flag every request waiting at ``since`` or sent until ``until`` (seconds since the origin) that has not
        answered by ``since``: a worker killed at ``since`` whose death was complete at ``until`` may have held it.
        How many."""
        marked = 0
        for r in reversed(self.records):
            if r.start < since - TIMEOUT_S:
                break
            waiting = id(r) in self.in_flight or r.start + r.latency >= since
            if r.start <= until and waiting and not r.in_flight_at_kill:
                r.in_flight_at_kill = True
                marked += 1
        return marked

    async def pace(self, rate: float, until: float) -> None:
        """Open loop: start a request every ``1 / rate`` seconds (along :attr:`cycle`) until ``until`` seconds after
        the origin, then wait for the last answers."""
        tasks: set[asyncio.Task[None]] = set()
        n, began = 0, time.perf_counter() - self.origin
        while (due := began + n / rate) < until:
            await asyncio.sleep(max(0.0, due - (time.perf_counter() - self.origin)))
            task = asyncio.create_task(self.one(*self.cycle[n % len(self.cycle)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks)

    async def capacity(self, seconds: float, concurrency: int = 8) -> float:
        """Closed-loop answers per second along :attr:`cycle` at ``concurrency`` (records not kept)."""
        count, end = 0, time.perf_counter() + seconds

        async def loop(k: int) -> None:
            nonlocal count
            while time.perf_counter() < end:
                status, _ = await self.ask(*self.cycle[(count + k) % len(self.cycle)])
                count += status in ("200", "OK")

        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        return count / seconds
