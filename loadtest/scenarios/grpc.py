"""The gRPC scenario (``python -m loadtest grpc``): CONCURRENCY closed-loop callers of ``ModelInfer`` on one
``grpc.aio`` channel for a bounded time.

A Python client, for a gRPC load without the perf extra; Triton's perf_analyzer (``make perf-analyzer``,
``-i grpc``) is the lighter client. Each call sends one FP32 tensor of the model's input shape (zeros: an affine
map costs the same whatever its input), or one encoded image as the BYTES input ``image``. The client's own CPU
is reported, since it shares the cores with the server.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import grpc
import numpy as np

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from loadtest.stats import percentile

__all__ = ["run_grpc"]


async def _request(stub: pb_grpc.GRPCInferenceServiceStub, model: str, image: bytes | None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    if image is not None:
        request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(image)
        return request
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    shape = [1, *metadata.inputs[0].shape[1:]]
    request.inputs.add(name="input", datatype="FP32", shape=shape)
    request.raw_input_contents.append(np.zeros(shape, dtype="<f4").tobytes())
    return request


async def _run(target: str, model: str, concurrency: int, duration: float, image: bytes | None) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = await _request(stub, model, image)
        await stub.ModelInfer(request, timeout=10)  # connected and warm
        latencies: list[float] = []
        errors: dict[str, int] = {}
        end = time.perf_counter() + duration

        async def caller() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=10)
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] = errors.get(error.code().name, 0) + 1
                else:
                    latencies.append(time.perf_counter() - started)

        began, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed, used = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime
    return {
        "target": target,
        "model": model,
        "input": "BYTES image" if image is not None else "FP32 zeros",
        "concurrency": concurrency,
        "seconds": elapsed,
        "answers": len(latencies),
        "errors": errors,
        "answers_per_s": len(latencies) / elapsed,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "client_cpu_cores": client_cpu / elapsed,
    }


def run_grpc(
    target: str, model: str, *, concurrency: int, duration: float, image: bytes | None = None
) -> dict[str, Any]:
    """Run the load against ``target`` (``HOST:PORT``) and return its figures (latencies in seconds)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run(target, model, concurrency, duration, image))
    return uvloop.run(_run(target, model, concurrency, duration, image))
