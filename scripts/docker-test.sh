#!/usr/bin/env bash
# Opt-in end-to-end check of the Docker setup (`make docker-test`; not part of CI, needs a Docker engine).
#
# Builds the api image, runs `docker compose up -d` (api + Prometheus, host network), waits for /readyz and the
# container's HEALTHCHECK, posts a digit to both variants, makes one Open Inference Protocol call over REST and one
# over gRPC (port 8001, from inside the api container, whose image has grpcio and foldserve's stubs), then asks
# Prometheus's HTTP API that the api target is up, that a foldserve histogram holds the requests just sent and
# that the recording rules return data.
# `docker compose down -v` runs on every exit. All traffic goes to 127.0.0.1 and every wait is bounded.
#
# Environment (all optional):
#   BASE_IMAGE, PROMETHEUS_IMAGE  default to the stand-ins local/python:3.11-bookworm and local/prometheus:bookworm
#                                 when those images exist (../shared/tools/docker-sandbox.sh builds them), else
#                                 to docker-compose.yml's defaults (python:3.11-slim-bookworm, prom/prometheus)
#   READY_TIMEOUT_S=300  PROM_TIMEOUT_S=240  REQUESTS=10 (per variant)  DIGIT_PNG=path (default: a drawn 7)
set -euo pipefail
cd "$(dirname "$0")/.."

API=http://127.0.0.1:8000
PROM=http://127.0.0.1:9090
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}
PROM_TIMEOUT_S=${PROM_TIMEOUT_S:-240}
REQUESTS=${REQUESTS:-10}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-foldserve-test}
export FOLDSERVE_IMAGE=${FOLDSERVE_IMAGE:-foldserve:latest}
START=$(date +%s)
WORK=$(mktemp -d /tmp/foldserve-docker-test.XXXXXX)

log() { printf '[docker-test %4ds] %s\n' "$(($(date +%s) - START))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }
compose() { docker compose -f docker-compose.yml "$@"; }
# json FILE EXPR: evaluates the Python expression EXPR with `d` bound to the JSON document in FILE.
json() { python3 -c "import json, math, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "logs of the failed run:"
    compose logs --no-color --tail=60 2>&1 || true
  fi
  log "docker compose down -v"
  compose down -v --remove-orphans >/dev/null 2>&1 || log "docker compose down failed"
  rm -rf "$WORK"
  log "$([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (exit $rc)") in $(($(date +%s) - START)) s"
}
trap cleanup EXIT

# --- preflight ----------------------------------------------------------------------------------------------
command -v docker >/dev/null || fail "docker not found (../shared/tools/docker-sandbox.sh installs it)"
docker compose version >/dev/null 2>&1 || fail "Docker Compose v2 (docker compose) not found"
for image_var in BASE_IMAGE:local/python:3.11-bookworm PROMETHEUS_IMAGE:local/prometheus:bookworm; do
  var=${image_var%%:*} standin=${image_var#*:}
  if [ -z "${!var:-}" ] && docker image inspect "$standin" >/dev/null 2>&1; then export "$var=$standin"; fi
done
log "BASE_IMAGE=${BASE_IMAGE:-(compose default)} PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-(compose default)}"
for port in 8000 8001 9090; do
  if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$port" 2>/dev/null
  then fail "127.0.0.1:$port is already in use; stop what listens there first"; fi
done
[ -f deploy/prometheus/prometheus.yml ] || fail "deploy/prometheus/prometheus.yml is missing"
[ -f deploy/prometheus/rules.yml ] || fail "deploy/prometheus/rules.yml is missing"
# The GPU switch cannot run without a GPU, but it must still render: one NVIDIA device reserved for api.
docker compose -f docker-compose.yml -f docker-compose.gpu.yml config --format json >"$WORK/gpu.json" \
  || fail "docker-compose.gpu.yml does not render"
[ "$(json "$WORK/gpu.json" "[(x['driver'], x['count']) for x in \
  d['services']['api']['deploy']['resources']['reservations']['devices']]")" = "[('nvidia', 1)]" ] \
  || fail "docker-compose.gpu.yml does not reserve one NVIDIA GPU for api"
store=${FOLDSERVE_MODEL_STORE_DIR:-model_store}
ls "$store"/*/manifest.json >/dev/null 2>&1 || fail "no model in $store (no $store/*/manifest.json)"
unreadable=$(find "$store" \( -type d ! -perm -o=rx \) -o \( -type f ! -perm -o=r \) | head -n 3)
# The container's user is not the files' owner; safetensors writes weights with mode 0600.
[ -z "$unreadable" ] || fail "files in $store the container cannot read (run chmod -R a+rX $store): $unreadable"

# --- build --------------------------------------------------------------------------------------------------
log "docker compose build api"
build_start=$(date +%s)
compose build api >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; fail "docker compose build api failed"; }
tail -n 2 "$WORK/build.log"
build_s=$(($(date +%s) - build_start))
image_bytes=$(docker image inspect -f '{{.Size}}' "$FOLDSERVE_IMAGE")
log "built $FOLDSERVE_IMAGE in ${build_s} s; image size $((image_bytes / 1000000)) MB"

# --- up, ready, healthy -------------------------------------------------------------------------------------
log "docker compose up -d"
compose up -d --no-build 2>&1 | tail -n 4
api_id=$(compose ps -q api)
[ -n "$api_id" ] || fail "no api container"
log "waiting for $API/readyz (at most ${READY_TIMEOUT_S} s)"
ready_deadline=$(($(date +%s) + READY_TIMEOUT_S))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/readyz")" = 200 ]; do
  state=$(docker inspect -f '{{.State.Status}} restarts={{.RestartCount}}' "$api_id")
  case "$state" in running\ restarts=0) ;; *) fail "api container is not running cleanly: $state" ;; esac
  [ "$(date +%s)" -lt "$ready_deadline" ] || fail "/readyz not 200 after ${READY_TIMEOUT_S} s"
  sleep 2
done
log "ready: $(curl -s "$API/readyz")"
deadline=$(($(date +%s) + 60))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$api_id")" = healthy ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "HEALTHCHECK not healthy: $(docker inspect -f '{{json .State.Health}}' "$api_id")"
  sleep 2
done
log "container HEALTHCHECK: healthy"
uid=$(compose exec -T api id -u)
[ "$uid" != 0 ] || fail "the api runs as root"
log "api runs as uid $uid ($(compose exec -T api id -un)); model store: $(compose exec -T api ls model_store | tr '\n' ' ')"

# --- predictions --------------------------------------------------------------------------------------------
# /readyz waited for every model to finish loading (ready or failed).
curl -sf "$API/models" -o "$WORK/models.json" || fail "GET /models failed"
[ "$(json "$WORK/models.json" "any(m['status'] == 'loading' for m in d['models'])")" = False ] \
  || fail "/readyz answered 200 while a model was still loading: $(cat "$WORK/models.json")"
for line in $(json "$WORK/models.json" "' '.join('%s:%s:%s:speedup=%s' % (m['name'], m['status'], \
  (m.get('simplification') or {}).get('kind'), m.get('forward_speedup')) for m in d['models'])"); do log "model $line"; done
[ "$(json "$WORK/models.json" "[m['name'] for m in d['models'] if m['status'] == 'failed']")" = "[]" ] \
  || log "WARNING: models that failed to load: $(json "$WORK/models.json" \
    "[(m['name'], m['reason']) for m in d['models'] if m['status'] == 'failed']")"
ready_models=$(json "$WORK/models.json" "' '.join(m['name'] for m in d['models'] if m['status'] == 'ready')")
model=$(json "$WORK/models.json" "d['default']")
digit=${DIGIT_PNG:-$WORK/digit.png}
if [ -z "${DIGIT_PNG:-}" ]; then
  # A 28x28 grey PNG of a 7 (white strokes on black, as in MNIST), written with the standard library only.
  python3 - "$digit" <<'PY'
import struct, sys, zlib
rows = [[0] * 28 for _ in range(28)]
for x in range(6, 22):
    rows[6][x] = rows[7][x] = 255
for y in range(8, 23):
    x = 21 - (y - 8) * 9 // 14
    rows[y][x] = rows[y][x - 1] = 255
raw = b"".join(b"\x00" + bytes(r) for r in rows)
chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
fi
predict() {  # predict MODEL true|false OUTFILE: one POST /predict; fails unless it answers 200
  local code
  code=$(curl -s -o "$3" -w '%{http_code}' -F "file=@$digit;type=image/png" "$API/predict?model=$1&collapsed=$2")
  [ "$code" = 200 ] || fail "POST /predict model=$1 collapsed=$2 answered $code: $(cat "$3")"
}
for name in $ready_models; do
  for collapsed in true false; do
    for _ in $(seq "$REQUESTS"); do predict "$name" "$collapsed" "$WORK/$collapsed.json"; done
    log "$name collapsed=$collapsed x$REQUESTS: $(json "$WORK/$collapsed.json" "d['variant'], \
      d['predictions'][0]['label'], round(d['predictions'][0]['probability'], 4), d['timings_ms']")"
  done
  [ "$(json "$WORK/true.json" "d['variant']")" = collapsed ] || fail "$name: collapsed=true did not answer collapsed"
  [ "$(json "$WORK/false.json" "d['variant']")" = original ] || fail "$name: collapsed=false did not answer original"
  label_c=$(json "$WORK/true.json" "d['predictions'][0]['label']")
  label_o=$(json "$WORK/false.json" "d['predictions'][0]['label']")
  [ "$label_c" = "$label_o" ] || fail "$name: the variants disagree on the digit: collapsed $label_c, original $label_o"
done
code=$(curl -s -o "$WORK/bad.json" -w '%{http_code}' -H 'Content-Type: text/plain' --data 'not an image' \
  "$API/predict?model=$model")
case "$code" in 4??) ;; *) fail "a text body to /predict answered $code, not a 4xx: $(cat "$WORK/bad.json")" ;; esac
log "a text body answered $code: $(json "$WORK/bad.json" "d['error']")"

# --- Open Inference Protocol: REST and gRPC ------------------------------------------------------------------
code=$(curl -s -o /dev/null -w '%{http_code}' "$API/v2/health/ready")
[ "$code" = 200 ] || fail "/v2/health/ready answered $code although /readyz answered 200"
predict "$model" true "$WORK/predict.json"
expected=$(json "$WORK/predict.json" "d['predictions'][0]['label']")
# The digit as a BYTES input in Triton's binary tensor data layout, top class asked through classification.
header_length=$(python3 - "$digit" "$WORK/v2-body.bin" <<'PY'
import json, struct, sys
png = open(sys.argv[1], "rb").read()
image = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4 + len(png)}}
top1 = {"name": "probabilities", "parameters": {"classification": 1}}
header = json.dumps({"inputs": [image], "outputs": [top1], "parameters": {"collapsed": True}}).encode()
open(sys.argv[2], "wb").write(header + struct.pack("<I", len(png)) + png)
print(len(header))
PY
)
code=$(curl -s -o "$WORK/v2-rest.json" -w '%{http_code}' --data-binary @"$WORK/v2-body.bin" \
  -H "Inference-Header-Content-Length: $header_length" "$API/v2/models/$model/infer")
[ "$code" = 200 ] || fail "POST /v2/models/$model/infer answered $code: $(cat "$WORK/v2-rest.json")"
rest=$(json "$WORK/v2-rest.json" "d['parameters']['variant'], d['outputs'][0]['data'][0].split(':')[2]")
log "v2 REST: $rest (/predict: $expected)"
[ "$rest" = "collapsed $expected" ] || fail "v2 REST answered $rest, /predict the label $expected"
# shellcheck disable=SC2016
grpc_call='
import sys, grpc
from app.serving.v2 import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc
from app.serving.v2.binary import deserialize_bytes_elements
request = pb.ModelInferRequest(model_name=sys.argv[1])
request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(sys.stdin.buffer.read())
request.outputs.add(name="probabilities").parameters["classification"].int64_param = 1
request.parameters["collapsed"].bool_param = False
with grpc.insecure_channel("127.0.0.1:8001") as channel:
    answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
(top,) = deserialize_bytes_elements("probabilities", answer.raw_output_contents[0], 1)
print(answer.parameters["variant"].string_param, top.decode().split(":")[2])
'
grpc=$(compose exec -T api python3 -c "$grpc_call" "$model" <"$digit") || fail "the gRPC ModelInfer call failed"
log "v2 gRPC (original): $grpc"
[ "$grpc" = "original $expected" ] || fail "v2 gRPC answered '$grpc', /predict the label $expected"
log "Prometheus checks use the default model, $model"

# --- Prometheus ---------------------------------------------------------------------------------------------
query() {  # query PROMQL OUTFILE: instant query; fails unless Prometheus answers status success
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" -o "$2" || fail "Prometheus query failed: $1"
  [ "$(json "$2" "d['status']")" = success ] || fail "Prometheus query not a success: $1: $(cat "$2")"
}
log "waiting for Prometheus to scrape the api (at most ${PROM_TIMEOUT_S} s)"
deadline=$(($(date +%s) + PROM_TIMEOUT_S))
until curl -sf "$PROM/api/v1/targets" -o "$WORK/targets.json" && [ "$(json "$WORK/targets.json" \
  "any(t['health'] == 'up' and '127.0.0.1:8000' in t['scrapeUrl'] for t in d['data']['activeTargets'])")" = True ]
do
  [ "$(date +%s)" -lt "$deadline" ] || fail "api target not up in Prometheus: $(cat "$WORK/targets.json" 2>/dev/null)"
  sleep 2
done
log "target: $(json "$WORK/targets.json" "[(t['labels'].get('job'), t['scrapeUrl'], t['health']) \
  for t in d['data']['activeTargets']]")"

curl -sf "$PROM/api/v1/rules" -o "$WORK/rules.json" || fail "GET /api/v1/rules failed"
rules=$(json "$WORK/rules.json" \
  "' '.join(r['name'] for g in d['data']['groups'] for r in g['rules'] if r['type'] == 'recording')")
[ -n "$rules" ] || fail "Prometheus loaded no recording rules from deploy/prometheus/rules.yml"
log "recording rules loaded: $(wc -w <<<"$rules")"
p50=model_variant:foldserve_request_duration_seconds:p50_1m
tr ' ' '\n' <<<"$rules" | grep -qxF "$p50" || p50=${rules%% *}

histogram="sum by (variant) (foldserve_request_duration_seconds_count{model=\"$model\"})"
# Keep a trickle of requests going, so that rate() over 1m windows sees increases, until both the histogram
# counts and the p50 recording rule show real numbers for the model posted to (models without traffic give NaN).
until query "$histogram" "$WORK/hist.json" && query "$p50" "$WORK/rule.json" \
  && [ "$(json "$WORK/hist.json" "sorted(r['metric'].get('variant') for r in d['data']['result'] \
       if float(r['value'][1]) >= $REQUESTS) == ['collapsed', 'original']")" = True ] \
  && [ "$(json "$WORK/rule.json" \
       "sorted(r['metric'].get('variant') for r in d['data']['result'] \
       if r['metric'].get('model') == '$model' and math.isfinite(float(r['value'][1])))")" = "['collapsed', 'original']" ]
do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no data in Prometheus: $histogram -> $(cat "$WORK/hist.json"); \
$p50 -> $(cat "$WORK/rule.json")"
  predict "$model" true "$WORK/trickle.json"; predict "$model" false "$WORK/trickle.json"
  sleep 3
done
log "histogram $histogram: $(json "$WORK/hist.json" \
  "{r['metric'].get('variant'): float(r['value'][1]) for r in d['data']['result']}")"
log "recording rule $p50 for $model: $(json "$WORK/rule.json" "[(r['metric'].get('variant'), \
  float(r['value'][1])) for r in d['data']['result'] if r['metric'].get('model') == '$model']")"
sleep 10  # one more scrape and rule evaluation, so the listing below includes the models posted to first
curl -sf "$PROM/api/v1/rules" -o "$WORK/rules.json" || fail "GET /api/v1/rules failed"
bad=$(json "$WORK/rules.json" \
  "[(r['name'], r.get('lastError')) for g in d['data']['groups'] for r in g['rules'] if r['health'] == 'err']")
[ "$bad" = "[]" ] || fail "recording rules failing to evaluate: $bad"
for rule in $rules; do
  query "$rule" "$WORK/r.json"
  log "  $rule: $(json "$WORK/r.json" "[(','.join(v for k, v in sorted(r['metric'].items()) if k != '__name__'), \
    round(float(r['value'][1]), 6)) for r in d['data']['result']] or 'no data yet'")"
done
log "image $FOLDSERVE_IMAGE: $((image_bytes / 1000000)) MB; build ${build_s} s this run"
