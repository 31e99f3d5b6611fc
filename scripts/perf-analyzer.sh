#!/usr/bin/env bash
# Run Triton's perf_analyzer (shipped inside the tritonclient wheel) against a foldserve server, for benchmarks.
#
#   make perf-analyzer ARGS="-m linear-resnet18-mnist -u 127.0.0.1:8000 --concurrency-range 1:8"
#   scripts/perf-analyzer.sh --version
#
# The binary links two libraries that no pip install of tritonclient brings: libcudart.so.12 (even on a CPU
# machine), from the nvidia-cuda-runtime-cu12 wheel of the `perf` extra (`make perf-analyzer` installs it), and
# libb64.so.0d, from Debian's libb64-0d package. This script finds both, or says how to get them, then runs the
# binary with every argument given. Note: perf_analyzer prints its usage for --help and exits with status 99.
#
# What it asks of the server (HTTP): GET /v2 (the extensions: server-side statistics are fetched only when
# "statistics" is listed), GET /v2/models/NAME (metadata), GET /v2/models/NAME/config (Triton's model
# configuration extension: max_batch_size, input[].name, output[].name, ...), then POST .../infer with binary
# inputs. It sends data for every input the model declares, and foldserve models declare two, of which a request
# carries one (`input`, FP32, and `image`, BYTES, marked optional in the configuration, which perf_analyzer 2.40
# honours only for data read from a file): generated data (random, or --input-data zero) therefore fails with
# "a request carries one input". Pass --input-data FILE.json naming only `input`, e.g. zeros for a 28x28 model:
#   python3 -c "import json; print(json.dumps({'data': [{'input': [0.0] * 784}]}))" > zeros.json
#   make perf-analyzer ARGS="-m linear-resnet18-mnist -u 127.0.0.1:8000 -i http --input-data zeros.json"
# (random bytes would also hold NaN and infinities, which foldserve refuses with 400). Over gRPC (-i grpc, -u
# 127.0.0.1:8001) it asks Triton's ModelConfig RPC, which foldserve's gRPC service answers beside the protocol's.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-.venv}"
binary="$venv/bin/perf_analyzer"
if [ ! -x "$binary" ]; then
  echo "perf-analyzer.sh: no $binary; install the perf extra: make perf-analyzer (or pip install -e '.[perf]')" >&2
  exit 2
fi

cudart_dir="$("$venv/bin/python" - <<'EOF'
import pathlib
try:
    import nvidia.cuda_runtime as runtime  # the nvidia-cuda-runtime-cu12 wheel
except ImportError:
    raise SystemExit(0)
for root in runtime.__path__:
    lib = pathlib.Path(root) / "lib"
    if (lib / "libcudart.so.12").exists():
        print(lib)
        break
EOF
)"
if [ -z "$cudart_dir" ]; then
  echo "perf-analyzer.sh: libcudart.so.12 not found in $venv; pip install 'nvidia-cuda-runtime-cu12==12.9.79'" >&2
  exit 2
fi
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
  echo "perf-analyzer.sh: libb64.so.0d not found; install Debian's package: apt-get install libb64-0d" >&2
  exit 2
fi

export LD_LIBRARY_PATH="$cudart_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$binary" "$@"
