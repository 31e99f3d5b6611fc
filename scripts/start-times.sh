#!/usr/bin/env bash
# Seconds from `python -m app serve` to /readyz answering 200, two starts of each kind, on the store given
# (default model_store/), in a runtime cache of its own that this script empties first:
#   eager    FOLDSERVE_RUNTIMES=eager (the cache holds only choices: eager has no graph)
#   cold     every runtime, an empty cache: every graph exported, every candidate timed
#   graphs   every runtime, the graphs read back, their runtime choices deleted: every candidate timed again
#   choice   every runtime, graphs and choices read back: only the chosen runtimes built and verified
# Usage: scripts/start-times.sh [STORE] [PORT]
set -euo pipefail
store=${1:-model_store}
port=${2:-8124}
cache=$(mktemp -d /tmp/foldserve-start-times-XXXXXX)
python=${PYTHON:-.venv/bin/python}
trap 'rm -rf "$cache"' EXIT

start() {
  local t0 pid
  t0=$(date +%s.%N)
  FOLDSERVE_MODEL_STORE=$store FOLDSERVE_RUNTIME_CACHE=$cache "$python" -m app serve --host 127.0.0.1 \
    --port "$port" >"$cache/.serve.log" 2>&1 &
  pid=$!
  until curl -sf "127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$cache/.serve.log"; exit 1; }
    sleep 0.1
  done
  echo "$(date +%s.%N) - $t0" | bc
  kill "$pid"
  wait "$pid" || true
}

for kind in eager cold graphs choice; do
  for i in 1 2; do
    case $kind in
      eager) export FOLDSERVE_RUNTIMES=eager ;;
      cold) export FOLDSERVE_RUNTIMES=auto; find "$cache" -mindepth 1 -not -name .serve.log -delete ;;
      graphs) rm -f "$cache"/*.choice.json ;;
      choice) ;;
    esac
    echo "$kind $i $(start) s"
  done
done
