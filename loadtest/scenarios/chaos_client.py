"""The soak-with-faults client: one request over ``/predict``, v2 REST JSON or gRPC ``ModelInfer``, its answer's top
label checked, and an open-loop pacer that records every request.

Six series: each protocol with ``collapsed`` true and false. ``/predict`` sends a digit's PNG; v2 REST and gRPC send
the same digit as an FP32 tensor (the PNG as the model's manifest says to normalise it). Expected labels are the
quiet server's answers, per series and digit, taken once before any load.
"""

from __future__ import annotations

import asyncio
import io
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

SERIES = tuple(f"{p}:{v}" for p in ("predict", "v2rest", "grpc") for v in ("collapsed", "original"))
"""Every protocol and variant the load mixes, ``PROTOCOL:VARIANT``."""

TIMEOUT_S = 15.0  # beyond the server's 10 s request deadline: a request with no answer by then is lost


@dataclass
class Record:
    """One request: start (seconds since the run's origin), series, status and latency (seconds).

    ``status`` is the HTTP status, the gRPC code's name, or ``no answer: ERROR`` when nothing came back.
    """

    start: float
    series: str
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
    """``(digit, png, tensor [1, C, H, W] float32)`` for each ``examples/digit-N.png``."""
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


class Client:
    """Sends one request of a series and checks its label; :meth:`pace` runs the open-loop load.

    Args:
        base_url: the server's HTTP address. grpc_target: its gRPC ``HOST:PORT``. model: the model loaded.
        digits: from :func:`load_digits`.
    """

    def __init__(self, base_url: str, grpc_target: str, model: str, digits: list[tuple[int, bytes, np.ndarray]]):
        self.base_url, self.model, self.digits = base_url, model, digits
        self.http = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S, limits=httpx.Limits(max_connections=256))
        self.channel = grpc.aio.insecure_channel(grpc_target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.expected: dict[tuple[str, int], str] = {}
        self.records: list[Record] = []
        self.in_flight: set[int] = set()  # ids of the Records still waiting
        self.origin = time.perf_counter()

    async def close(self) -> None:
        """Close the HTTP pool and the gRPC channel."""
        await self.http.aclose()
        await self.channel.close()

    async def ask(self, series: str, digit: int) -> tuple[str, str | None]:
        """One request; ``(status, top label or None)``."""
        protocol, variant = series.split(":")
        collapsed = variant == "collapsed"
        _, png, tensor = self.digits[digit]
        if protocol == "predict":
            r = await self.http.post(
                "/predict",
                params={"model": self.model, "collapsed": str(collapsed).lower(), "top_k": 1},
                content=png,
                headers={"content-type": "image/png"},
            )
            return str(r.status_code), r.json()["predictions"][0]["label"] if r.status_code == 200 else None
        if protocol == "v2rest":
            data = tensor.ravel().tolist()
            body = {
                "inputs": [{"name": "input", "datatype": "FP32", "shape": list(tensor.shape), "data": data}],
                "outputs": [{"name": "logits"}],
                "parameters": {"collapsed": collapsed},
            }
            r = await self.http.post(f"/v2/models/{self.model}/infer", json=body)
            if r.status_code != 200:
                return str(r.status_code), None
            return "200", str(int(np.argmax(r.json()["outputs"][0]["data"])))
        request = pb.ModelInferRequest(model_name=self.model)
        request.inputs.add(name="input", datatype="FP32", shape=list(tensor.shape))
        request.raw_input_contents.append(tensor.astype("<f4").tobytes())
        request.outputs.add(name="logits")
        request.parameters["collapsed"].bool_param = collapsed
        try:
            answer = await self.stub.ModelInfer(request, timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            return error.code().name, None
        return "OK", str(int(np.argmax(np.frombuffer(answer.raw_output_contents[0], dtype="<f4"))))

    async def learn_expected(self) -> dict[str, dict[int, str]]:
        """Ask the quiet server every series and digit once; its answers become the expected labels."""
        for series in SERIES:
            for digit, _, _ in self.digits:
                status, label = await self.ask(series, digit)
                if label is None:
                    raise RuntimeError(f"the quiet server answered {series} digit {digit} with {status}")
                self.expected[(series, digit)] = label
        return {s: {d: self.expected[(s, d)] for d, _, _ in self.digits} for s in SERIES}

    async def one(self, series: str, digit: int) -> None:
        """Send one request and append its :class:`Record`."""
        record = Record(time.perf_counter() - self.origin, series, digit, "pending", 0.0)
        self.records.append(record)
        self.in_flight.add(id(record))
        try:
            record.status, record.label = await self.ask(series, digit)
        except Exception as error:  # every failure to answer is a result here
            record.status = f"no answer: {type(error).__name__}"
        finally:
            self.in_flight.discard(id(record))
        record.latency = time.perf_counter() - self.origin - record.start
        record.wrong = record.label is not None and record.label != self.expected[(series, digit)]

    def mark_in_flight(self) -> int:
        """Flag every request waiting now (a worker is about to be killed); how many."""
        waiting = [r for r in self.records if id(r) in self.in_flight]
        for r in waiting:
            r.in_flight_at_kill = True
        return len(waiting)

    async def pace(self, rate: float, until: float) -> None:
        """Open loop: start a request every ``1 / rate`` seconds (series and digits in turn) until ``until``
        seconds after the origin, then wait for the last answers."""
        tasks: set[asyncio.Task[None]] = set()
        n, began = 0, time.perf_counter() - self.origin
        while (due := began + n / rate) < until:
            await asyncio.sleep(max(0.0, due - (time.perf_counter() - self.origin)))
            task = asyncio.create_task(self.one(SERIES[n % len(SERIES)], (n // len(SERIES)) % len(self.digits)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks)

    async def capacity(self, seconds: float, concurrency: int = 8) -> float:
        """Closed-loop answers per second of the mixed series at ``concurrency`` (records not kept)."""
        count, end = 0, time.perf_counter() + seconds

        async def loop(k: int) -> None:
            nonlocal count
            while time.perf_counter() < end:
                status, _ = await self.ask(SERIES[(count + k) % len(SERIES)], (count + k) % len(self.digits))
                count += status in ("200", "OK")

        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        return count / seconds
