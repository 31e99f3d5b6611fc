"""A closed-loop gRPC load: CONCURRENCY callers of ModelInfer on one grpc.aio channel for DURATION seconds.

A Python client, for a gRPC load without the perf extra; Triton's perf_analyzer (`make perf-analyzer`, `-i grpc`)
is the lighter client that docs/performance.md measures with. Each call sends one FP32 tensor of the model's input
shape (zeros: an affine map costs the same whatever its input), or with --image one encoded image as BYTES.

    .venv/bin/python scripts/grpc-bench.py 127.0.0.1:8001 linear-resnet18-mnist --concurrency 16 --duration 6

Prints the answers, errors, answers per second, p50 and p99, and the CPU this client used (it shares the cores).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc


async def run(args: argparse.Namespace) -> None:
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name=args.model)
        if args.image:
            request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
                args.image.read_bytes()
            )
        else:
            metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name=args.model), timeout=10)
            shape = [1, *metadata.inputs[0].shape[1:]]
            request.inputs.add(name="input", datatype="FP32", shape=shape)
            request.raw_input_contents.append(np.zeros(shape, dtype="<f4").tobytes())
        await stub.ModelInfer(request, timeout=10)  # connected and warm
        latencies: list[float] = []
        errors = 0
        end = time.perf_counter() + args.duration

        async def caller() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                else:
                    latencies.append(time.perf_counter() - started)

        began, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(caller() for _ in range(args.concurrency)))
        elapsed, used = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime) / elapsed
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    print(
        f"{len(latencies)} answers, {errors} errors, {len(latencies) / elapsed:.0f}/s, p50 {cuts[49] * 1e3:.2f} ms, "
        f"p99 {cuts[98] * 1e3:.2f} ms, client CPU {client_cpu:.2f} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of the gRPC service")
    parser.add_argument("model")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds")
    parser.add_argument("--image", type=Path, help="send this encoded image as the BYTES input 'image'")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
