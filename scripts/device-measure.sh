#!/usr/bin/env bash
# What needs a machine with a GPU and more cores than a laptop, in one bounded run (under 9 minutes):
#   1. the GPU tests (pytest -m gpu: simplification on CUDA, the service's CUDA path, v2 infer, an imported ResNet-50);
#   2. foldserve against the reference handler on the CPU, one server per worker count (CPU_WORKERS, 1,2,4,8);
#   3. the CUDA path: foldserve on the GPU (GPU_WORKERS, 1,2) against the reference (on the CPU: it has no GPU path).
# Needs the project's dependencies importable by $PY and hey on the PATH. Reports and logs land in $OUT.
#   OUT=/tmp/device bash scripts/device-measure.sh
set -uo pipefail

OUT=${OUT:-/tmp/foldserve-device}
PY=${PY:-python3}
DURATION=${DURATION:-3}          # seconds per measured cell on the CPU
GPU_DURATION=${GPU_DURATION:-2}  # and on the GPU
CPU_WORKERS=${CPU_WORKERS:-1,2,4,8}
GPU_WORKERS=${GPU_WORKERS:-1,2}
CPU_MODELS=${CPU_MODELS:-linear-resnet18-mnist}
GPU_MODELS=${GPU_MODELS:-linear-resnet18-mnist,annealed-resnet18-mnist}
CPU_CONCURRENCY=${CPU_CONCURRENCY:-1,16,64}
GPU_CONCURRENCY=${GPU_CONCURRENCY:-1,16,64}
GPU_TESTS=${GPU_TESTS:-1}  # 0 leaves the tests out
mkdir -p "$OUT"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1

{
    date -u
    echo "cores: $(nproc)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
    "$PY" -c "import sys, torch, torchvision; print('python', sys.version.split()[0], 'torch', torch.__version__,
'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/machine.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: run bounded, note the exit status and the time taken
    local name=$1 limit=$2 started=$SECONDS
    shift 2
    timeout "$limit" "$@" >"$work/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - started)) s" | tee -a "$OUT/machine.txt"
    for kind in md json; do  # a report, if the step wrote one, lands in $OUT at once
        [ -f "$work/$name/versus.$kind" ] && cp "$work/$name/versus.$kind" "$OUT/$name-versus.$kind"
    done
}

if [ "$GPU_TESTS" = 1 ]; then
    # Deprecation warnings of the machine's own (older) torch are not errors here; everything else stays one.
    step gpu-tests 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider -W ignore::DeprecationWarning \
        tests/simplify/test_cuda.py tests/serving/test_gpu.py
    cp "$work/gpu-tests.log" "$OUT/gpu-tests.log"
fi

store() {  # store NAME MODELS: a model store of only MODELS (comma-separated), so that servers load only those
    mkdir -p "$work/$1"
    for model in ${2//,/ }; do cp -r "model_store/$model" "$work/$1/"; done
    echo "$work/$1"
}
versus=("$PY" -m loadtest versus --warmup 1 --repeat 1 --images examples)
step cpu 250 "${versus[@]}" --spawn "$(store store-cpu "$CPU_MODELS")" --models "$CPU_MODELS" \
    --concurrency "$CPU_CONCURRENCY" --duration "$DURATION" --workers "$CPU_WORKERS" \
    --server-env FOLDSERVE_DEVICE=cpu --out "$work/cpu"
step gpu 180 "${versus[@]}" --spawn "$(store store-gpu "$GPU_MODELS")" --models "$GPU_MODELS" \
    --concurrency "$GPU_CONCURRENCY" --duration "$GPU_DURATION" --workers "$GPU_WORKERS" \
    --server-env FOLDSERVE_DEVICE=cuda --out "$work/gpu"

for log in "$work"/*.log "$work"/*/*.log; do  # one file for every log's end: what failed, if anything did
    [ -f "$log" ] && { echo "=== $log"; tail -n 40 "$log"; }
done >"$OUT/logs.txt"
rm -rf "$work"
