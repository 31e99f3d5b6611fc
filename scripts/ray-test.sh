#!/usr/bin/env bash
# Opt-in check of foldserve on a real two-node Ray cluster on this machine (`make ray-test`; not part of CI).
#
# python -m loadtest.ray_cluster does the work (loadtest/ray_cluster/__init__.py lists the phases): a head node on
# 127.0.0.2 and a worker on 127.0.0.3 (one CPU each; loopback addresses, because Ray rewrites 127.0.0.1 to the
# machine's outward address), started with deploy/ray/ray.env (HAProxy and direct ingress), deploy/ray/serve.yaml
# deployed with `serve run` beside a no-op deployment, answers and 431s compared with the single process's,
# Prometheus with deploy/prometheus/prometheus-ray.yml, the three measured with hey, a replica, a node and a
# node's HAProxy killed under load, autoscaling 1 -> 2 -> 1; then the same cluster behind Ray's Python proxy,
# measured again.
# Every load is bounded in requests and time; the whole run in 14 minutes at most (about 8 here).
# `ray stop` runs on every exit (it stops every Ray process of this machine: the run refuses to start while
# another Ray cluster runs here), then every process whose command line names this run's folder (the HAProxies
# Ray leaves running) is killed, as are the processes the run started; none may be left.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=$VENV/bin/python
START=$(date +%s)
log() { printf '[ray-test.sh %4ds] %s\n' "$(($(date +%s) - START))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

"$PY" -c "import ray.serve" 2>/dev/null || fail "no ray in $VENV: make ray-test installs the ray extra first"
for tool in prometheus promtool hey; do command -v "$tool" >/dev/null || fail "$tool not found (apt-get install prometheus hey)"; done
if ps -eo comm= | grep -qxE 'raylet|gcs_server'; then fail "a Ray cluster already runs on this machine; ray stop would end it too"; fi
for address in 127.0.0.1:8000 127.0.0.1:8404 127.0.0.1:9101 127.0.0.1:8500 127.0.0.1:18480 127.0.0.1:19090 \
  127.0.0.2:6379 127.0.0.2:8002 127.0.0.3:8002; do
  if python3 -c "import socket, sys; h, p = sys.argv[1].rsplit(':', 1); socket.create_connection((h, int(p)), 1)" "$address" 2>/dev/null
  then fail "$address is already in use"; fi
done
promtool check config deploy/prometheus/prometheus-ray.yml >/dev/null 2>&1 || fail "promtool check config deploy/prometheus/prometheus-ray.yml"

WORK=$(mktemp -d /tmp/frt-XXXXXX)  # short: Ray's socket paths live under it
# Token authentication, as a cluster should run, with a token of this run's own: Ray would otherwise generate one
# into ~/.ray/auth_token, or run without.
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(python3 -c "import secrets; print(secrets.token_hex(32))")
export RAY_AUTH_TOKEN
cleanup() {
  local rc=$?
  if [ -f "$WORK/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$WORK/pids"
  fi
  "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true
  pkill -KILL -f "$WORK/haproxy" 2>/dev/null || true  # Ray's HAProxies outlive ray stop
  rm -rf /tmp/foldserve-ray-metrics/127.0.0.[23]_8002*  # the replicas' metric files of this run's two hosts
  if [ "$rc" -ne 0 ]; then
    log "last lines of the replicas' logs:"
    # shellcheck disable=SC2012  # names made by Ray, no spaces
    ls -t "$WORK"/ray/session_latest/logs/serve/replica_*.log 2>/dev/null | head -n 4 | xargs -r tail -n 3 | cut -c1-240 || true
  fi
  RESULTS=${RESULTS:-/tmp/foldserve-ray-test}
  for mode in haproxy python-proxy; do
    [ -f "$WORK/results-$mode.json" ] && cp "$WORK/results-$mode.json" "$RESULTS-$mode.json"
  done
  rm -rf "$WORK"
  sleep 1
  if pgrep -f "$WORK/haproxy" >/dev/null || ps -eo stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | grep -qxE 'raylet|gcs_server|haproxy'; then
    log "left running: $(pgrep -af "$WORK/haproxy|raylet|gcs_server" | cut -c1-160)"
    rc=1
  fi
  log "$([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (exit $rc)") in $(($(date +%s) - START)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# one process per ingress mode, the cluster stopped between them (ray.env is read where a node starts)
"$PY" -m loadtest.ray_cluster "$WORK" haproxy || status=$?
"$PY" -m loadtest.ray_cluster "$WORK" python-proxy || status=$?
exit "${status:-0}"
