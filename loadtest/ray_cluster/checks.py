"""What ``make ray-test`` checks through the ingress: the same answers and refusals as the single process, the
metrics of each host, Prometheus over the cluster, and that HAProxy routes only to ready replicas."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from loadtest.ray_cluster.cluster import (
    HEAD_IP,
    INGRESS,
    METRICS_PORT,
    ROOT,
    SINGLE,
    WORKER_IP,
    Aims,
    Processes,
    log,
    wait_for,
)

DIGITS = sorted((ROOT / "examples").glob("digit-*.png"))
PROM_ADDRESS = "127.0.0.1:19090"


def host_answers(ip: str) -> float:
    """Answers counted by the replicas of one host (200s, every model, variant and protocol)."""
    text = httpx.get(f"http://{ip}:{METRICS_PORT}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r'^foldserve_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', text, re.M))


def ready_models() -> list[str]:
    models = httpx.get(f"{SINGLE}/models", timeout=10).json()["models"]
    return sorted(m["name"] for m in models if m["status"] == "ready")


def check_identity(aims: Aims) -> int:
    """Every model, variant and digit through Ray and through the single process; returns requests sent to Ray."""
    before = {ip: host_answers(ip) for ip in (HEAD_IP, WORKER_IP)}
    sent, different, compared = 0, [], 0
    with httpx.Client(timeout=30) as client:
        for _ in range(3):  # HAProxy picks between the replicas: repeat until both have answered
            for model in ready_models():
                for collapsed in ("true", "false"):
                    for digit in DIGITS:
                        url = f"/predict?model={model}&collapsed={collapsed}&top_k=10"
                        headers = {"content-type": "image/png"}
                        body = digit.read_bytes()
                        # a new connection each time: the kernel spreads them over the nodes' ingresses
                        ours = httpx.post(INGRESS + url, content=body, headers=headers, timeout=30)
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
    aims.check(
        not different,
        f"answers through Ray identical to the single process's (probabilities of all 10 classes): "
        f"{len(different)} differ {different[:3]}",
    )
    aims.check(all(v > 0 for v in per_host.values()), "both replicas (one per host) answered")
    aims.check(
        sum(per_host.values()) == sent, f"the hosts' metrics count every answer: {sum(per_host.values()):.0f} of {sent}"
    )
    return sent


def raw_status(base: str, head: bytes) -> tuple[int, str]:
    """Send a request's line and headers over a socket: the answer's status and its first bytes of body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        answer += connection.recv(65536) if not answer.endswith(b"}") else b""
    status = answer.partition(b"\r\n")[0].split()
    return int(status[1]) if len(status) > 1 else 0, answer.partition(b"\r\n\r\n")[2][:200].decode(errors="replace")


def check_headers(aims: Aims) -> dict[str, Any]:
    """120 headers and a 40 KB header: the single process's 431 and body through the ingress too."""
    cases = {
        "120 headers": b"".join(b"x-field-%d: v\r\n" % i for i in range(120)),
        "a 40 KB header": b"x-large: " + b"a" * 40_000 + b"\r\n",
    }
    found: dict[str, Any] = {}
    for name, headers in cases.items():
        head = b"GET /healthz HTTP/1.1\r\nhost: foldserve\r\n" + headers + b"\r\n"
        single, ray = raw_status(SINGLE, head), raw_status(INGRESS, head)
        found[name] = {"single": single, "ray": ray}
        aims.check(single[0] == ray[0] == 431 and single[1] == ray[1], f"{name}: {ray} through Ray, {single} alone")
    return found


def haproxy_servers(work: Path) -> list[dict[str, str]]:
    """The servers of foldserve's backend as each node's HAProxy has them (``show servers state`` on its admin
    socket): ``srv_addr``, ``srv_port`` and ``srv_op_state`` (2: UP) among them."""
    servers = []
    for admin in sorted((work / "haproxy").glob("*/admin.sock")):
        text = b""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as connection:  # a killed node's is left
            connection.settimeout(5)
            connection.connect(str(admin))
            connection.sendall(b"show servers state\n")
            while chunk := connection.recv(65536):
                text += chunk
        if not text:
            continue
        lines = text.decode().splitlines()
        header = next(line for line in lines if line.startswith("# be_id")).removeprefix("# ").split()
        rows = [dict(zip(header, line.split(), strict=False)) for line in lines if line and line[0].isdigit()]
        servers += [r for r in rows if "foldserve" in r.get("be_name", "") and "SERVE_REPLICA" in r["srv_name"]]
    return servers


class ReadinessWatch:
    """While a replica is replaced: every server an HAProxy adds and has UP must answer ``/readyz`` 200 on its port.

    The servers UP when the watch starts are left out: a killed replica stays UP until HAProxy's checks fail
    (its requests are retried on another server meanwhile); what is watched is that a replacement enters the
    rotation only once it has loaded.
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.checks = 0
        self.not_ready: list[str] = []
        self.seen: dict[str, float] = {}  # a new server's address -> when it was first UP
        self.known = {address for address, up in self._servers() if up}

    def _servers(self) -> list[tuple[str, bool]]:
        try:
            servers = haproxy_servers(self.work)
        except (OSError, StopIteration):  # an HAProxy reloading, or gone with its node
            return []
        return [(f"{s['srv_addr']}:{s['srv_port']}", s["srv_op_state"] == "2") for s in servers]

    def poll(self, until: float, since: float) -> None:
        while time.monotonic() < until:
            for address, up in self._servers():
                if not up or address in self.known:
                    continue
                self.seen.setdefault(address, round(time.monotonic() - since, 1))
                self.checks += 1
                try:
                    ready: int | str = httpx.get(f"http://{address}/readyz", timeout=5).status_code
                except httpx.HTTPError as exc:
                    ready = type(exc).__name__
                if ready != 200:
                    self.not_ready.append(f"{address}: {ready}")
            time.sleep(0.25)


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


def check_prometheus(aims: Aims, sent: int) -> None:
    def targets_up() -> bool:
        try:
            active = httpx.get(f"http://{PROM_ADDRESS}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        except httpx.HTTPError:
            return False
        up = Counter(t["labels"]["job"] for t in active if t["health"] == "up")
        return up["foldserve"] == 2 and up["ray"] == 2

    try:
        wait_for(targets_up, 90, "Prometheus targets up", 2)
        aims.check(True, "Prometheus scrapes 2 foldserve targets (one per host) and 2 ray targets")
    except TimeoutError as exc:
        aims.check(False, str(exc))
        return
    total = 'sum(foldserve_requests_total{status="200"})'
    try:
        wait_for(lambda: (r := query(total)) and float(r[0]["value"][1]) == sent, 60, "cluster count", 2)
        aims.check(True, f"{total} over the cluster = {sent}, the answers sent through Ray")
    except TimeoutError:
        aims.check(False, f"{total} = {query(total)}, not {sent}")
    ratio = "model:foldserve_request_duration_seconds:p50_ratio_original_over_collapsed_1m"
    values: dict[str, float] = {}
    deadline = time.monotonic() + 60
    body = (ROOT / "examples/digit-2.png").read_bytes()
    while time.monotonic() < deadline and "linear-resnet18-mnist" not in values:  # rate() needs two scrapes
        for collapsed in ("true", "false") * 5:
            url = f"{INGRESS}/predict?model=linear-resnet18-mnist&collapsed={collapsed}"
            httpx.post(url, content=body, headers={"content-type": "image/png"}, timeout=30)
        time.sleep(1)
        values = {r["metric"]["model"]: float(r["value"][1]) for r in query(ratio)}
        values = {model: round(v, 2) for model, v in values.items() if v == v}  # NaN: no traffic in the window
    aims.check("linear-resnet18-mnist" in values, f"the before/after rule over the cluster: {ratio} = {values}")
    healthy: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):  # the aim below says what was found
        wait_for(lambda: healthy.extend(query("ray_serve_deployment_replica_healthy")) or healthy, 60, "Ray's", 2)
    aims.check(
        len(healthy) > 0,
        f"Ray's serve metrics scraped: ray_serve_deployment_replica_healthy series: {len(healthy)} (its per-request "
        f"HTTP metrics are off, deploy/ray/ray.env)",
    )
