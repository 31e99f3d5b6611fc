"""``python -m loadtest.ray_cluster WORK INGRESS``: the phases of :mod:`loadtest.ray_cluster` for one ingress mode.

One process per mode (scripts/ray-test.sh runs ``haproxy``, then ``python-proxy``): a Ray driver stays bound to
the first cluster it joined, so the second cluster gets a driver of its own. Each writes
``WORK/results-INGRESS.json`` and exits 0 when every aim of its phase held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from loadtest.ray_cluster import checks, faults, speed
from loadtest.ray_cluster.cluster import (
    GCS,
    HEAD_IP,
    INGRESS_MODES,
    SINGLE,
    SINGLE_PORT,
    WORKER_IP,
    Aims,
    Processes,
    deploy,
    log,
    node_processes,
    processes_under,
    ray_start,
    ray_stop,
    replica_pids,
    running,
    serve_config,
    wait_for,
)

DEADLINE_S = {"haproxy": 600.0, "python-proxy": 240.0}  # make ray-test's aim is 10 minutes in all
FAILOVER_AIM_S = {"replica killed": 30.0, "worker node killed": 45.0}
HAPROXY_AIM_S = 60.0  # Ray's controller restarts a proxy whose health checks fail: 3 checks, 10 s apart
TWO = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}


def start_cluster(work: Path, ingress: str) -> None:
    """Two nodes in ``ingress`` mode, foldserve at two replicas and the no-op beside it, all running."""
    import ray

    ray_start(HEAD_IP, work, ingress)
    ray_start(WORKER_IP, work, ingress)
    ray.init(address=GCS, logging_level="ERROR", log_to_driver=False)
    nodes = [(n["NodeManagerAddress"], n["Resources"].get("CPU")) for n in ray.nodes() if n["Alive"]]
    log(f"{ingress}: cluster {nodes}")
    deploy(serve_config(work, f"serve-two-{ingress}.yaml", TWO, ingress))
    took = wait_for(lambda: running() == 2 and running("noop", "Noop") == 2, 240, "two replicas of each running")
    log(
        f"{ingress}: deploy/ray/serve.yaml at two replicas and the no-op: running after {took:.0f} s more "
        f"(replica processes: head {replica_pids(HEAD_IP)}, worker {replica_pids(WORKER_IP)})"
    )


def stop_cluster(work: Path, aims: Aims, ingress: str) -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()
    killed = ray_stop(work)
    log(f"{ingress}: ray stop; HAProxy processes it left running, killed: {killed or 'none'}")
    left = processes_under(work / "haproxy") + processes_under(work / "ray") + node_processes(HEAD_IP)
    aims.check(not left, f"{ingress}: no Ray or HAProxy process of this run left after ray stop: {left}")


def sigkill(victims: list[int]) -> list[int]:
    """SIGKILL each of ``victims`` (those already gone are passed over); ``victims``."""
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return victims


def kill_replica() -> list[int]:
    return sigkill(replica_pids(HEAD_IP))


def kill_node() -> list[int]:
    return sigkill(node_processes(WORKER_IP))


def haproxies(ip: str, work: Path) -> list[int]:
    """The HAProxy processes of the node at ``ip`` (Ray's proxy actor of that node starts them)."""
    return sorted(set(node_processes(ip)) & set(processes_under(work / "haproxy")))


def kill_haproxy(work: Path) -> list[int]:
    """SIGKILL the worker node's HAProxy alone: its proxy actor, its replica and the head node live on."""
    return sigkill(haproxies(WORKER_IP, work))


def haproxy_serving(work: Path, victims: list[int]) -> bool:
    """Whether the worker node runs an HAProxy again, none of ``victims``, and every HAProxy has both replicas UP."""
    started = [pid for pid in haproxies(WORKER_IP, work) if pid not in victims]
    servers = checks.haproxy_servers(work)
    return bool(started) and len(servers) == 4 and all(s["srv_op_state"] == "2" for s in servers)


def start_single(procs: Processes) -> None:
    log(f"single process on {SINGLE} (the reference)")
    env = {**os.environ, "FOLDSERVE_PORT": str(SINGLE_PORT), "FOLDSERVE_GRPC_PORT": "0"}
    procs.start([sys.executable, "-m", "app", "serve"], "single.log", env=env)


def wait_single() -> None:
    wait_for(lambda: httpx.get(f"{SINGLE}/readyz", timeout=5).status_code == 200, 240, "single process ready")
    wait_for(
        lambda: not any(m["status"] == "loading" for m in httpx.get(f"{SINGLE}/models").json()["models"]),
        240,
        "single process loaded",
    )


async def haproxy_phases(work: Path, procs: Processes, aims: Aims, results: dict[str, Any]) -> None:
    start_cluster(work, "haproxy")
    wait_single()
    checks.prometheus(procs, work)
    sent = checks.check_identity(aims)
    results["headers"] = checks.check_headers(aims)
    checks.check_prometheus(aims, sent)
    results["speed"] = {"haproxy": speed.measure("haproxy")}
    for name, kill, recover in (
        ("replica killed", kill_replica, lambda: None),
        ("worker node killed", kill_node, lambda: ray_start(WORKER_IP, work, "haproxy")),
    ):
        results[name] = await faults.failover(work, name, kill, recover)
        faults.check_failover(aims, name, results[name], FAILOVER_AIM_S[name])
    results["haproxy killed"] = found = await faults.haproxy_restart(
        work, lambda: kill_haproxy(work), lambda victims: haproxy_serving(work, victims)
    )
    aims.check(found["killed"] > 0, "HAProxy killed: the worker node ran an HAProxy to kill")
    aims.check(
        found["seconds_until_haproxy_serves"] <= HAPROXY_AIM_S,
        f"HAProxy killed: the node's HAProxy serves again after {found['seconds_until_haproxy_serves']} s "
        f"(aim {HAPROXY_AIM_S:.0f} s)",
    )
    faults.check_failed(aims, "HAProxy killed", found)
    results["autoscaling"] = await faults.autoscaling(aims, work)


def check_speed(aims: Aims, measured: dict[str, Any]) -> None:
    ratios = measured["haproxy"]["ratios"]
    aims.check(
        ratios["foldserve_c1_p50_ratio"] <= 2.0,
        f"through HAProxy, p50 at concurrency 1 is {ratios['foldserve_c1_p50_ratio']}x the single process's (aim 2x)",
    )
    aims.check(
        ratios["foldserve_c16_answers_ratio"] >= 0.7,
        f"through HAProxy, answers/s at concurrency 16 are {ratios['foldserve_c16_answers_ratio']}x the single "
        f"process's (aim 0.7x)",
    )


async def python_proxy_phases(work: Path, aims: Aims, results: dict[str, Any]) -> None:
    start_cluster(work, "python-proxy")
    wait_single()
    results["speed"] = {"python-proxy": speed.measure("python-proxy")}
    results["headers"] = checks.check_headers(aims)


async def main(work: Path, ingress: str) -> int:
    procs, aims = Processes(work), Aims()
    results: dict[str, Any] = {}
    finished = False
    try:
        start_single(procs)
        try:
            if ingress == "haproxy":
                await haproxy_phases(work, procs, aims, results)
                check_speed(aims, results["speed"])
            else:
                await python_proxy_phases(work, aims, results)
        finally:
            stop_cluster(work, aims, ingress)
        (work / f"results-{ingress}.json").write_text(json.dumps(results, indent=1))
        finished = True
        return 1 if aims.failures else 0
    finally:
        log(f"{ingress}: stopping Prometheus and the single process")
        procs.stop()
        if not finished:
            aims.failures.append("the check stopped before its end (the error follows)")
        log(f"{ingress}: {'PASSED' if not aims.failures else 'FAILED: ' + '; '.join(aims.failures)}")


if __name__ == "__main__":
    workdir, mode = Path(sys.argv[1]), sys.argv[2]
    if mode not in INGRESS_MODES:
        sys.exit(f"ingress must be one of {INGRESS_MODES}, got {mode!r}")
    message = f"ray-test's {mode} phase ran past {DEADLINE_S[mode]:.0f} s"
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(message)))
    signal.alarm(int(DEADLINE_S[mode]))
    sys.exit(asyncio.run(main(workdir, mode)))
