"""The cluster of ``make ray-test``: its processes, its two nodes in either ingress mode, and Serve's view of it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"  # loopback: Ray rewrites 127.0.0.1 to the machine's outward address
GCS = f"{HEAD_IP}:6379"
INGRESS = "http://127.0.0.1:8000"  # each node's HAProxy (or Ray's proxy), sharing the port
SINGLE_PORT = 18480
SINGLE = f"http://127.0.0.1:{SINGLE_PORT}"
METRICS_PORT = 8002
EXPORT_PORTS = {HEAD_IP: 20080, WORKER_IP: 20081}  # Ray's metrics export port of each node
AGENT_PORTS = {HEAD_IP: 52365, WORKER_IP: 52366}  # two nodes on one machine need their own agent ports
REPLICA_TITLE = "ray::ServeReplica:foldserve:FoldServe"
INGRESS_MODES = ("haproxy", "python-proxy")

STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[ray-test {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


@dataclass
class Aims:
    """The aims checked so far and those that did not hold."""

    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        log(("PASS " if ok else "FAIL ") + message)
        if not ok:
            self.failures.append(message)


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


def ray_env_file() -> dict[str, str]:
    """deploy/ray/ray.env's variables."""
    lines = (line.strip() for line in (ROOT / "deploy/ray/ray.env").read_text().splitlines())
    return {k: v.strip('"') for k, v in (line.split("=", 1) for line in lines if line and not line.startswith("#"))}


def node_env(ingress: str, work: Path) -> dict[str, str]:
    """The environment of ``ray start`` for one ingress mode.

    HAProxy: deploy/ray/ray.env as documented, with this run's own folder for HAProxy's files (so that its
    processes are found and stopped at the end) and the port shared by the two nodes' HAProxies: two nodes on one
    machine bind the same 127.0.0.1:8000 (and stats and metrics ports), which only SO_REUSEPORT allows; the kernel
    then spreads connections over both, as a load balancer in front of two machines would.
    """
    env = {**os.environ, "RAY_worker_niceness": "0"}  # replicas compete with hey as the single process does
    if ingress == "python-proxy":
        return env
    haproxy = work / "haproxy"
    return {
        **env,
        **ray_env_file(),
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(BIN / "foldserve-haproxy"),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(haproxy / "metrics.sock"),
        "SERVE_SOCKET_REUSE_PORT_ENABLED": "1",
    }


def ray_start(ip: str, work: Path, ingress: str) -> None:
    args = [str(BIN / "ray"), "start", f"--node-ip-address={ip}", "--num-cpus=1", "--disable-usage-stats"]
    args += [f"--metrics-export-port={EXPORT_PORTS[ip]}", f"--dashboard-agent-listen-port={AGENT_PORTS[ip]}"]
    args += [f"--temp-dir={work / 'ray'}"]
    if ip == HEAD_IP:
        args += ["--head", "--port=6379", "--include-dashboard=false"]
    else:
        args += [f"--address={GCS}"]
    run(args, timeout=120, env=node_env(ingress, work))


def ray_stop(work: Path) -> list[int]:
    """``ray stop``, then the HAProxies it leaves running (Ray's HAProxy manager dies without stopping its
    HAProxy); the pids of those killed."""
    subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
    killed = []
    for pid in processes_under(work / "haproxy"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
            killed.append(pid)
    deadline = time.monotonic() + 10
    while processes_under(work / "haproxy") and time.monotonic() < deadline:  # SIGKILL is not instant
        time.sleep(0.1)
    return killed


def processes_under(folder: Path) -> list[int]:
    """Processes whose command line names ``folder`` (HAProxy's configuration, Ray's temporary folder)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if cmdline.with_name("stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue  # a zombie: dead, waiting for its parent to collect it
            args = cmdline.read_bytes().split(b"\0")
            if any(str(folder).encode() in arg for arg in args) and int(cmdline.parent.name) != os.getpid():
                found.append(int(cmdline.parent.name))
    return found


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


def serve_config(work: Path, name: str, deployment: dict[str, Any], ingress: str = "haproxy") -> Path:
    """deploy/ray/serve.yaml with the FoldServe deployment's fields replaced by ``deployment``, and the no-op
    application (:mod:`loadtest.ray_cluster.noop`) at /noop beside it.

    Behind Ray's Python proxy the replica fetches each body from the proxy by calls to it, which on a busy node
    takes over a second: the least upload rate would time Ray, not the client, and is turned off there.
    """
    config = yaml.safe_load((ROOT / "deploy/ray/serve.yaml").read_text())
    if ingress == "haproxy":
        # every interface, as a cluster of several machines must: each node's HAProxy reaches the replicas of the
        # other node at that node's address (127.0.0.3:PORT), where a replica bound to 127.0.0.1 refuses it (the
        # requests still go to loopback addresses only)
        config["http_options"]["host"] = "0.0.0.0"
    config["applications"][0]["deployments"][0].update(deployment)
    if ingress == "python-proxy":
        config["applications"][0]["runtime_env"]["env_vars"]["FOLDSERVE_MIN_UPLOAD_BYTES_PER_S"] = "0"
    config["applications"].append(
        {"name": "noop", "route_prefix": "/noop", "import_path": "loadtest.ray_cluster.noop:app"}
    )
    path = work / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def deploy(config: Path) -> None:
    run([str(BIN / "serve"), "run", str(config), "--address", GCS, "--non-blocking"], timeout=180)


def replicas(application: str = "foldserve", deployment: str = "FoldServe") -> dict[str, int]:
    """Replicas of one deployment by state (RUNNING, STARTING, ...)."""
    from ray import serve

    app = serve.status().applications.get(application)
    if app is None or deployment not in app.deployments:
        return {}
    return {str(state): count for state, count in app.deployments[deployment].replica_states.items()}


def running(application: str = "foldserve", deployment: str = "FoldServe") -> int:
    return replicas(application, deployment).get("RUNNING", 0)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, period: float = 0.5) -> float:
    """Seconds until ``predicate()`` held; raises after ``timeout``."""
    start = time.monotonic()
    while not _holds(predicate):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(period)
    return time.monotonic() - start


def _holds(predicate: Callable[[], Any]) -> bool:
    try:
        return bool(predicate())
    except Exception:  # the controller restarting, a server not yet listening: ask again
        return False
