"""The real check of foldserve on a two-node Ray cluster on this machine (``make ray-test``; scripts/ray-test.sh).

Phases, each bounded in time, with every process it starts stopped at the end, whatever happens:

1. a two-node cluster (head 127.0.0.2, worker 127.0.0.3: both loopback; one CPU each), the single-process
   service beside it (127.0.0.1:18480), deploy/ray/serve.yaml deployed with ``serve run`` at two replicas;
2. every model, both variants, every examples/digit-*.png through Ray's proxy and through the single process:
   the answers must be identical, and each host's metrics port must show its replica answered;
3. Prometheus with deploy/prometheus/prometheus-ray.yml: both jobs' targets up, the cluster's count of answers
   equal to what was sent, the recording rules and Ray's serve metrics present;
4. Ray's proxy against the single process, side by side with hey (concurrency 1 and 16);
5. under a bounded load: one replica's process killed, then the worker node killed (and started again):
   failed requests counted (no retries), time until two replicas serve again;
6. autoscaling between one and two replicas under load, and back down once it stops: the timeline.

Run from the repository root with the virtual environment that has the ray extra. Exit code 0 when every aim
held; the numbers are printed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"  # loopback: Ray rewrites 127.0.0.1 to the machine's outward address
GCS = f"{HEAD_IP}:6379"
PROXY = "http://127.0.0.1:8000"
SINGLE_PORT = 18480
SINGLE = f"http://127.0.0.1:{SINGLE_PORT}"
PROM_ADDRESS = "127.0.0.1:19090"
METRICS_PORT = 8002
EXPORT_PORTS = {HEAD_IP: 20080, WORKER_IP: 20081}  # Ray's metrics export port of each node
AGENT_PORTS = {HEAD_IP: 52365, WORKER_IP: 52366}  # two nodes on one machine need their own agent ports
DIGITS = sorted((ROOT / "examples").glob("digit-*.png"))
REPLICA_TITLE = "ray::ServeReplica:foldserve:FoldServe"
DEADLINE_S = 1500.0  # the whole check
FAILOVER_AIM_S = 30.0

STARTED = time.monotonic()
failures: list[str] = []  # the aims that did not hold


def log(message: str) -> None:
    print(f"[ray-test {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def aim(ok: bool, message: str) -> None:
    log(("PASS " if ok else "FAIL ") + message)
    if not ok:
        failures.append(message)


# --- processes -----------------------------------------------------------------------------------------------


@dataclass
class Processes:
    """What this check started, to stop at the end."""

    work: Path
    popen: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], log_name: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        with open(self.work / log_name, "ab") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, **kwargs)
        self.popen.append(process)
        with open(self.work / "pids", "a") as pids:  # scripts/ray-test.sh kills them if this process cannot
            pids.write(f"{process.pid}\n")
        return process

    def stop(self) -> None:
        for process in self.popen:
            if process.poll() is None:
                process.terminate()
        for process in self.popen:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def run(args: list[str], timeout: float, **kwargs: Any) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:3])} failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result.stdout


def ray_start(ip: str, temp_dir: Path) -> None:
    args = [str(BIN / "ray"), "start", f"--node-ip-address={ip}", "--num-cpus=1", "--disable-usage-stats"]
    args += [f"--metrics-export-port={EXPORT_PORTS[ip]}", f"--dashboard-agent-listen-port={AGENT_PORTS[ip]}"]
    args += [f"--temp-dir={temp_dir}"]
    if ip == HEAD_IP:
        args += ["--head", "--port=6379", "--include-dashboard=false"]
    else:
        args += [f"--address={GCS}"]
    run(args, timeout=120)


def node_processes(ip: str) -> list[int]:
    """The raylet of the node at ``ip`` and every process under it (its workers, agents and replicas)."""
    table = [line.split(None, 2) for line in run(["ps", "-eo", "pid=,ppid=,args="], 30).splitlines()]
    raylets = [int(pid) for pid, _, args in table if "/raylet " in args and f"--node_ip_address={ip}" in args]
    found = set(raylets)
    grew = True
    while grew:
        grew = False
        for pid, ppid, _ in table:
            if int(ppid) in found and int(pid) not in found:
                found.add(int(pid))
                grew = True
    return sorted(found)


def replica_pids(ip: str) -> list[int]:
    titles = {
        int(line.split(None, 1)[0]): line.split(None, 1)[1]
        for line in run(["ps", "-eo", "pid=,args="], 30).splitlines()
    }
    return [pid for pid in node_processes(ip) if titles.get(pid, "").startswith(REPLICA_TITLE)]


# --- Serve ---------------------------------------------------------------------------------------------------


def serve_config(work: Path, name: str, deployment: dict[str, Any]) -> Path:
    """deploy/ray/serve.yaml with the FoldServe deployment's fields replaced by ``deployment``."""
    config = yaml.safe_load((ROOT / "deploy/ray/serve.yaml").read_text())
    config["applications"][0]["deployments"][0].update(deployment)
    path = work / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def deploy(config: Path) -> None:
    run([str(BIN / "serve"), "run", str(config), "--address", GCS, "--non-blocking"], timeout=180)


def replicas() -> dict[str, int]:
    """Replicas of the FoldServe deployment by state (RUNNING, STARTING, ...)."""
    from ray import serve

    application = serve.status().applications.get("foldserve")
    if application is None or "FoldServe" not in application.deployments:
        return {}
    return {str(state): count for state, count in application.deployments["FoldServe"].replica_states.items()}


def running() -> int:
    return replicas().get("RUNNING", 0)


def wait_for(predicate: Any, timeout: float, what: str, period: float = 0.5) -> float:
    """Seconds until ``predicate()`` held; raises after ``timeout``."""
    start = time.monotonic()
    while not _holds(predicate):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(period)
    return time.monotonic() - start


def _holds(predicate: Any) -> bool:
    try:
        return bool(predicate())
    except Exception:  # the controller restarting, a server not yet listening: ask again
        return False


# --- HTTP ----------------------------------------------------------------------------------------------------


def host_answers(ip: str) -> float:
    """Answers counted by the replicas of one host (200s, every model, variant and protocol)."""
    text = httpx.get(f"http://{ip}:{METRICS_PORT}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r'^foldserve_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', text, re.M))


def ready_models() -> list[str]:
    models = httpx.get(f"{SINGLE}/models", timeout=10).json()["models"]
    return sorted(m["name"] for m in models if m["status"] == "ready")


def check_identity() -> int:
    """Every model, variant and digit through Ray and through the single process; returns requests sent to Ray."""
    before = {ip: host_answers(ip) for ip in (HEAD_IP, WORKER_IP)}
    sent, different, compared = 0, [], 0
    with httpx.Client(timeout=30) as client:
        for _ in range(3):  # the router picks between the replicas: repeat until both have answered
            for model in ready_models():
                for collapsed in ("true", "false"):
                    for digit in DIGITS:
                        url = f"/predict?model={model}&collapsed={collapsed}&top_k=10"
                        headers = {"content-type": "image/png"}
                        body = digit.read_bytes()
                        # a new connection each time: the kernel spreads them over the nodes' proxies, and each
                        # proxy prefers the replica on its own node
                        ours = httpx.post(PROXY + url, content=body, headers=headers, timeout=30)
                        sent += 1
                        theirs = client.post(SINGLE + url, content=body, headers=headers)
                        assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
                        a, b = ours.json(), theirs.json()
                        compared += 1
                        key = ("model", "variant", "simplification", "predictions")
                        if [a[k] for k in key] != [b[k] for k in key]:
                            different.append(f"{model} collapsed={collapsed} {digit.name}")
            after = {ip: host_answers(ip) for ip in (HEAD_IP, WORKER_IP)}
            if all(after[ip] > before[ip] for ip in after):
                break
    per_host = {ip: after[ip] - before[ip] for ip in after}
    log(
        f"{compared} answers compared ({len(ready_models())} models x 2 variants x {len(DIGITS)} digits, repeated); "
        f"answers per host from its metrics port: {per_host}"
    )
    aim(
        not different,
        f"answers through Ray identical to the single process's (probabilities of all 10 classes): "
        f"{len(different)} differ {different[:3]}",
    )
    aim(all(v > 0 for v in per_host.values()), "both replicas (one per host) answered")
    aim(
        sum(per_host.values()) == sent, f"the hosts' metrics count every answer: {sum(per_host.values()):.0f} of {sent}"
    )
    return sent


# --- load ----------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    start: float
    end: float
    status: str  # "200", "503", ... or the exception's name


async def load(
    url: str, body: bytes, concurrency: int, stop: asyncio.Event, max_s: float, max_requests: int, rate: float = 0
) -> list[Outcome]:
    """POST ``body`` to ``url`` from ``concurrency`` loops until ``stop``, ``max_s`` or ``max_requests``; no retries.

    ``rate`` > 0 paces the loops to that many requests per second in all (an open load that a single replica
    can carry); 0 sends as fast as the answers come back.
    """
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + max_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    interval = concurrency / rate if rate > 0 else 0.0
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:

        async def loop(index: int) -> None:
            due = time.monotonic() + index * interval / concurrency
            while not stop.is_set() and time.monotonic() < deadline and len(outcomes) < max_requests:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += interval
                start = time.monotonic()
                try:
                    response = await client.post(url, content=body, headers={"content-type": "image/png"})
                    status = str(response.status_code)
                    if status != "200":
                        status += " " + response.text[:120].replace("\n", " ")
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                outcomes.append(Outcome(start, time.monotonic(), status))

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return outcomes


def summarize(outcomes: list[Outcome], since: float) -> dict[str, Any]:
    failed = [o for o in outcomes if o.status != "200"]
    return {
        "requests": len(outcomes),
        "ok": len(outcomes) - len(failed),
        "failed": len(failed),
        "failures": dict(Counter(o.status for o in failed)),
        "failed_at_s": [round(o.start - since, 2) for o in failed][:20],
    }


async def failover(name: str, kill: Any, recover: Any, concurrency: int = 8, rate: float = 40) -> dict[str, Any]:
    """Load the collapsed linear model at ``rate`` requests/s, ``kill()`` after 5 s, ``recover()``; the time until
    two replicas run again."""
    url = f"{PROXY}/predict?model=linear-resnet18-mnist"
    stop = asyncio.Event()
    body = (ROOT / "examples/digit-7.png").read_bytes()
    traffic = asyncio.create_task(load(url, body, concurrency, stop, max_s=150, max_requests=20_000, rate=rate))
    await asyncio.sleep(5)
    killed_at = time.monotonic()
    victims = await asyncio.to_thread(kill)
    log(f"{name}: killed {victims} under load ({rate:.0f} requests/s, at most {concurrency} at once)")
    await asyncio.to_thread(recover)
    fewer = await asyncio.to_thread(wait_for, lambda: running() < 2, 60, "Ray noticing the loss", 0.2)
    back = await asyncio.to_thread(wait_for, lambda: running() == 2, 120, "two replicas running again", 0.5)
    recovered_at = time.monotonic()
    await asyncio.sleep(3)
    stop.set()
    outcomes = await traffic
    result = summarize(outcomes, killed_at)
    result["in_flight_at_kill"] = sum(o.start <= killed_at <= o.end for o in outcomes)
    result["seconds_until_ray_saw_one_replica"] = round(fewer, 1)
    result["seconds_until_two_replicas_serve"] = round(recovered_at - killed_at, 1)
    during = [o for o in outcomes if killed_at <= o.start <= recovered_at]
    result["answers_per_s_while_one_replica"] = round(sum(o.status == "200" for o in during) / max(back, 0.1), 1)
    log(f"{name}: {json.dumps(result)}")
    return result


# --- phases --------------------------------------------------------------------------------------------------


def prometheus(procs: Processes, work: Path) -> None:
    """Start Prometheus with deploy/prometheus/prometheus-ray.yml, the node file written as Ray's dashboard would."""
    import ray

    prom = work / "prometheus"
    prom.mkdir()
    targets = [f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}" for n in ray.nodes() if n["Alive"]]
    sd = prom / "prom_metrics_service_discovery.json"
    sd.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": sorted(targets)}]))
    config = (ROOT / "deploy/prometheus/prometheus-ray.yml").read_text()
    (prom / "prometheus.yml").write_text(config.replace("/tmp/ray/prom_metrics_service_discovery.json", str(sd)))
    shutil.copy(ROOT / "deploy/prometheus/rules.yml", prom / "rules.yml")
    args = ["prometheus", f"--config.file={prom / 'prometheus.yml'}", f"--storage.tsdb.path={prom / 'data'}"]
    procs.start([*args, f"--web.listen-address={PROM_ADDRESS}"], "prometheus.log")
    log(f"Prometheus on {PROM_ADDRESS}, Ray's nodes: {sorted(targets)}")


def query(promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"http://{PROM_ADDRESS}/api/v1/query", params={"query": promql}, timeout=10).json()
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def check_prometheus(sent: int) -> None:
    def targets_up() -> bool:
        try:
            active = httpx.get(f"http://{PROM_ADDRESS}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        except httpx.HTTPError:
            return False
        up = Counter(t["labels"]["job"] for t in active if t["health"] == "up")
        return up["foldserve"] == 2 and up["ray"] == 2

    try:
        wait_for(targets_up, 90, "Prometheus targets up", 2)
        aim(True, "Prometheus scrapes 2 foldserve targets (one per host) and 2 ray targets")
    except TimeoutError as exc:
        aim(False, str(exc))
        return
    total = 'sum(foldserve_requests_total{status="200"})'
    try:
        wait_for(lambda: (r := query(total)) and float(r[0]["value"][1]) == sent, 60, "cluster count", 2)
        aim(True, f"{total} over the cluster = {sent}, the answers sent through Ray")
    except TimeoutError:
        aim(False, f"{total} = {query(total)}, not {sent}")
    ratio = "model:foldserve_request_duration_seconds:p50_ratio_original_over_collapsed_1m"
    values: dict[str, float] = {}
    deadline = time.monotonic() + 60
    body = (ROOT / "examples/digit-2.png").read_bytes()
    while time.monotonic() < deadline and "linear-resnet18-mnist" not in values:  # rate() needs two scrapes
        for collapsed in ("true", "false") * 5:
            url = f"{PROXY}/predict?model=linear-resnet18-mnist&collapsed={collapsed}"
            httpx.post(url, content=body, headers={"content-type": "image/png"}, timeout=30)
        time.sleep(1)
        values = {r["metric"]["model"]: float(r["value"][1]) for r in query(ratio)}
        values = {model: round(v, 2) for model, v in values.items() if v == v}  # NaN: no traffic in the window
    aim("linear-resnet18-mnist" in values, f"the before/after rule over the cluster: {ratio} = {values}")
    wait_for(lambda: len(query("ray_serve_num_http_requests_total")) > 0, 60, "Ray's serve metrics", 2)
    ray_requests = sum(float(r["value"][1]) for r in query("ray_serve_num_http_requests_total"))
    healthy = query("ray_serve_deployment_replica_healthy")
    aim(
        ray_requests > 0,
        f"Ray's serve metrics scraped: ray_serve_num_http_requests_total = {ray_requests:.0f}, "
        f"ray_serve_deployment_replica_healthy series: {len(healthy)}",
    )


def hey(url: str, concurrency: int, seconds: int = 6) -> dict[str, float]:
    body = str(ROOT / "examples/digit-7.png")
    args = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "image/png", "-D", body, url]
    out = run(args, timeout=seconds + 60)

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        if found is None:
            raise RuntimeError(f"hey's output has no {pattern!r}: {out[-1000:]}")
        return float(found.group(1))

    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    return {
        "answers_per_s": number(r"Requests/sec:\s+([\d.]+)"),
        "mean_ms": number(r"Average:\s+([\d.]+) secs") * 1000,
        "p50_ms": number(r"50% in ([\d.]+) secs") * 1000,
        "p99_ms": number(r"99% in ([\d.]+) secs") * 1000,
        "non_200": float(sum(int(n) for code, n in codes.items() if code != "200")),
    }


def overhead() -> dict[str, Any]:
    path = "/predict?model=linear-resnet18-mnist"
    rows: dict[str, list[dict[str, float]]] = {}
    for concurrency, rounds in ((1, 2), (16, 2)):
        for _ in range(rounds):  # interleaved, so that both see the same machine
            for name, base in (("single", SINGLE), ("ray", PROXY)):
                rows.setdefault(f"{name} c{concurrency}", []).append(hey(base + path, concurrency))
    best = {
        k: {m: round(min(r[m] for r in v) if m != "answers_per_s" else max(r[m] for r in v), 3) for m in v[0]}
        for k, v in rows.items()
    }
    for key, row in best.items():
        log(f"hey {key}: {row}")
    result = {
        "runs": rows,
        "best": best,
        "c1_p50_ratio": round(best["ray c1"]["p50_ms"] / best["single c1"]["p50_ms"], 1),
        "c1_mean_ratio": round(best["ray c1"]["mean_ms"] / best["single c1"]["mean_ms"], 1),
        "c16_answers_per_s": (best["single c16"]["answers_per_s"], best["ray c16"]["answers_per_s"]),
    }
    log(
        f"Ray's proxy at concurrency 1: p50 x{result['c1_p50_ratio']}, mean x{result['c1_mean_ratio']} the single "
        f"process's; answers/s at concurrency 16, single vs Ray: {result['c16_answers_per_s']}"
    )
    return result


async def autoscaling(work: Path) -> list[tuple[float, int, int, float]]:
    """Min 1, max 2: load the slow model until two replicas run, stop, wait for one; the timeline."""
    settings = {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 4,
        "upscale_delay_s": 3,
        "downscale_delay_s": 15,
        "look_back_period_s": 15,
    }
    config = serve_config(work, "serve-autoscale.yaml", {"autoscaling_config": settings})
    log(f"autoscaling: redeploying with autoscaling_config {settings} (the rest of deploy/ray/serve.yaml unchanged)")
    await asyncio.to_thread(deploy, config)
    await asyncio.to_thread(wait_for, lambda: replicas() == {"RUNNING": 1}, 120, "scaled to one replica", 1)
    timeline: list[tuple[float, int, int, float]] = []  # seconds, running, starting or stopping, answers in the last s
    stop = asyncio.Event()
    url = f"{PROXY}/predict?model=resnet18-mnist&collapsed=false"
    body = (ROOT / "examples/digit-3.png").read_bytes()
    t0 = time.monotonic()
    traffic = asyncio.create_task(load(url, body, 16, stop, max_s=150, max_requests=100_000))
    seen: list[Outcome] = []
    stopped_at = None
    while time.monotonic() - t0 < 300:
        await asyncio.sleep(1)
        states = await asyncio.to_thread(replicas)
        now = time.monotonic() - t0
        run_n = states.get("RUNNING", 0)
        other = sum(v for k, v in states.items() if k != "RUNNING")
        timeline.append((round(now, 1), run_n, other, 0.0))
        if stopped_at is None and run_n == 2 and other == 0:
            await asyncio.sleep(10)  # both serve a while
            stop.set()
            seen = await traffic
            stopped_at = time.monotonic() - t0
            timeline.append((round(stopped_at, 1), -1, -1, 0.0))  # marks the end of the load
        if stopped_at is not None and run_n == 1 and other == 0:
            break
    if stopped_at is None:
        stop.set()
        seen = await traffic
    rates = Counter(int(o.end - t0) for o in seen if o.status == "200")
    timeline = [(t, r, o, float(rates.get(int(t) - 1, 0))) for t, r, o, _ in timeline]
    changes = [row for i, row in enumerate(timeline) if i == 0 or row[1:3] != timeline[i - 1][1:3] or row[0] % 10 < 1]
    for t, r, o, rate in changes:
        log("  load stopped" if r < 0 else f"  t={t:6.1f}s running={r} starting/stopping={o} answers/s={rate:.0f}")
    up = next((t for t, r, o, _ in timeline if r == 2), None)
    down = next((t for t, r, o, _ in timeline if stopped_at and t > stopped_at and r == 1 and o == 0), None)
    aim(up is not None, f"autoscaling 1 -> 2 under load: two replicas running {up} s after the load started")
    aim(
        down is not None,
        f"autoscaling 2 -> 1 when the load stopped: one replica {down and round(down - stopped_at, 1)} "
        f"s after it stopped",
    )
    failed = summarize(seen, t0)
    aim(
        failed["failed"] == 0,
        f"no request failed while scaling: {failed['failed']} of {failed['requests']} {failed['failures']}",
    )
    return timeline


async def main(work: Path) -> int:
    procs = Processes(work)
    temp_dir = work / "ray"
    results: dict[str, Any] = {}
    finished = False
    try:
        log(f"single process on {SINGLE} (the reference), then a head node on {HEAD_IP} and a worker on {WORKER_IP}")
        env = {**os.environ, "FOLDSERVE_PORT": str(SINGLE_PORT), "FOLDSERVE_GRPC_PORT": "0"}
        procs.start([sys.executable, "-m", "app", "serve"], "single.log", env=env)
        ray_start(HEAD_IP, temp_dir)
        ray_start(WORKER_IP, temp_dir)
        import ray

        ray.init(address=GCS, logging_level="ERROR", log_to_driver=False)
        log(f"cluster: {[(n['NodeManagerAddress'], n['Resources'].get('CPU')) for n in ray.nodes() if n['Alive']]}")
        fixed = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}
        deploy(serve_config(work, "serve-two.yaml", fixed))
        took = wait_for(lambda: running() == 2, 240, "two replicas running")
        log(
            f"deployed deploy/ray/serve.yaml at two replicas: both running after {took:.0f} s more "
            f"(replica processes: head {replica_pids(HEAD_IP)}, worker {replica_pids(WORKER_IP)})"
        )
        wait_for(lambda: httpx.get(f"{SINGLE}/readyz", timeout=5).status_code == 200, 240, "single process ready")
        wait_for(
            lambda: not any(m["status"] == "loading" for m in httpx.get(f"{SINGLE}/models").json()["models"]),
            240,
            "single process loaded",
        )

        prometheus(procs, work)
        sent = check_identity()
        check_prometheus(sent)
        results["overhead"] = overhead()

        def kill_replica() -> list[int]:
            victims = replica_pids(HEAD_IP)
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            return victims

        results["replica_killed"] = await failover("replica killed", kill_replica, lambda: None)
        r = results["replica_killed"]
        aim(
            r["seconds_until_two_replicas_serve"] <= FAILOVER_AIM_S,
            f"replica killed: two replicas serve again after {r['seconds_until_two_replicas_serve']} s "
            f"(aim {FAILOVER_AIM_S:.0f} s)",
        )
        aim(
            r["failed"] <= r["in_flight_at_kill"],
            f"replica killed: {r['failed']} of {r['requests']} requests failed, no more than were in flight (on "
            f"both replicas) when it was killed, {r['in_flight_at_kill']}: {r['failures']}",
        )

        def kill_node() -> list[int]:
            victims = node_processes(WORKER_IP)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return victims

        results["node_killed"] = await failover("worker node killed", kill_node, lambda: ray_start(WORKER_IP, temp_dir))
        n = results["node_killed"]
        log(
            f"worker node killed and started again at once: two replicas serve after "
            f"{n['seconds_until_two_replicas_serve']} s; {n['failed']} of {n['requests']} failed {n['failures']}"
        )
        results["autoscaling"] = await autoscaling(work)
        (work / "results.json").write_text(json.dumps(results, indent=1))
        finished = True
        return 1 if failures else 0
    finally:
        log("stopping: Prometheus, the single process, ray stop")
        procs.stop()
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
        if not finished:
            failures.append("the check stopped before its end (the error follows)")
        log(f"{'PASSED' if not failures else 'FAILED: ' + '; '.join(failures)}")


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"ray-test ran past {DEADLINE_S} s")))
    signal.alarm(int(DEADLINE_S))
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="frt-", dir="/tmp"))
    sys.exit(asyncio.run(main(workdir)))
