"""The loader runs every batch size a runtime keeps something for (OpenVINO) before the variant serves.

OpenVINO's CPU plugin builds kernels and buffers for each batch size the first time it runs it, and keeps them:
served cold, a worker's memory rose each time a load spike brought a larger batch than before. The memory case runs
in a fresh interpreter, measuring its private memory (``/proc/self/smaps_rollup``) after ``malloc_trim``."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from app.runtimes.onnx_graph import export_onnx
from app.runtimes.onnx_runtime import OnnxRuntime
from app.runtimes.openvino_runtime import OpenVinoRuntime
from app.runtimes.select import SplitByBatch
from tests.helpers import tiny_resnet

CPU = torch.device("cpu")

PROGRAM = textwrap.dedent(
    """
    import ctypes, json
    from pathlib import Path
    import torch
    from app.runtimes.onnx_graph import export_onnx
    from app.runtimes.openvino_runtime import OpenVinoRuntime
    from app.runtimes.select import VariantRuntime
    from app.serving.loading import _warm_up
    from tests.helpers import tiny_resnet

    libc = ctypes.CDLL("libc.so.6")
    LARGEST = 32

    def private_mib():
        fields = dict(line.split(":", 1) for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:])
        return sum(int(fields[key].split()[0]) for key in ("Private_Clean", "Private_Dirty")) / 1024

    def growth(runtime):
        libc.malloc_trim(0)
        before = private_mib()
        for size in range(1, LARGEST + 1):
            runtime(example.expand(size, 1, 28, 28).contiguous())
        libc.malloc_trim(0)
        return private_mib() - before

    graph = export_onnx(tiny_resnet(width=16, in_channels=1), (1, 28, 28))
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    warmed = OpenVinoRuntime(graph, threads=1, device=torch.device("cpu"))
    _warm_up(VariantRuntime(warmed, LARGEST, {}, {}, {"openvino": 1}), example, runs=1)
    cold = OpenVinoRuntime(graph, threads=1, device=torch.device("cpu"))
    for size in (1, 2):  # what the loader ran before, on the CPU
        cold(example.expand(size, 1, 28, 28).contiguous())
    print(json.dumps({"warmed": growth(warmed), "cold": growth(cold)}))
    """
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_a_warmed_openvino_variant_takes_no_more_memory_for_any_batch_size_it_serves() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()[-1]
    growth = json.loads(out)
    assert growth["cold"] > 8, growth  # 30 sizes it had not run: half a MiB each for this network
    assert growth["warmed"] < 1.5, growth


def test_the_sizes_to_prepare_are_those_of_the_runtime_that_takes_them() -> None:
    graph = export_onnx(tiny_resnet(), (1, 28, 28))
    ort = OnnxRuntime(graph, threads=1, device=CPU)
    ov = OpenVinoRuntime(graph, threads=1, device=CPU)
    assert ort.sizes_to_prepare(8) == set()
    assert ov.sizes_to_prepare(8) == set(range(1, 9))
    assert SplitByBatch(ort, ov, split=3).sizes_to_prepare(8) == set(range(3, 9))
    assert SplitByBatch(ov, ort, split=3).sizes_to_prepare(8) == {1, 2}
