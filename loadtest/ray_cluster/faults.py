"""Faults under a bounded load: a replica or a node killed, autoscaling up and down; failures as clients saw them."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.proctree import alive
from loadtest.ray_cluster.checks import ReadinessWatch
from loadtest.ray_cluster.cluster import INGRESS, ROOT, Aims, deploy, log, replicas, running, serve_config, wait_for


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


AROUND_DEATH_S = 0.1
"""A request sent this soon after its replica died may still fail: HAProxy had written it on a connection to the
replica before the close reached it, and does not send a request again. Every failure must start before then."""


def failed_late(outcomes: list[Outcome], dead_at: float) -> int:
    """The requests that failed though they were sent more than :data:`AROUND_DEATH_S` after the victims died."""
    return sum(o.status != "200" and o.start > dead_at + AROUND_DEATH_S for o in outcomes)


def check_failed(aims: Aims, name: str, result: dict[str, Any]) -> None:
    """Failures only around the kill: none sent more than :data:`AROUND_DEATH_S` after the victims died."""
    aims.check(
        result["failed_late"] == 0,
        f"{name}: {result['failed']} of {result['requests']} requests failed, {result['failed_late']} of them sent "
        f"more than {AROUND_DEATH_S} s after the victims died ({result['dead_after_s']} s after the kill; "
        f"{result['in_flight_at_kill']} in flight until then): {result['failures']}",
    )


def wait_dead(pids: list[int], timeout: float = 5.0) -> float:
    """When every one of ``pids`` was dead (:func:`loadtest.proctree.alive`), polled every millisecond: a SIGKILLed
    process takes tens of milliseconds to die, and its sockets take requests until then."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.001)
    return time.monotonic()


def kill_accounting(outcomes: list[Outcome], killed_at: float, dead_at: float) -> dict[str, Any]:
    """``in_flight_at_kill``: the requests sent before the victims were dead and not answered before the kill
    began, those a killed process may have held (a replica, or the HAProxy or raylet in front of it);
    ``dead_after_s``; ``failed_late`` (:func:`failed_late`)."""
    return {
        "in_flight_at_kill": sum(o.start <= dead_at and o.end >= killed_at for o in outcomes),
        "dead_after_s": round(dead_at - killed_at, 3),
        "failed_late": failed_late(outcomes, dead_at),
    }


def _linear_load(concurrency: int, rate: float) -> tuple[asyncio.Event, asyncio.Task[list[Outcome]]]:
    """The failover load started: the collapsed linear model at ``rate``; set the event to stop it."""
    url = f"{INGRESS}/predict?model=linear-resnet18-mnist"
    stop = asyncio.Event()
    body = (ROOT / "examples/digit-7.png").read_bytes()
    return stop, asyncio.create_task(load(url, body, concurrency, stop, max_s=150, max_requests=20_000, rate=rate))


async def failover(
    work: Path,
    name: str,
    kill: Callable[[], list[int]],
    recover: Callable[[], None],
    concurrency: int = 8,
    rate: float = 40,
) -> dict[str, Any]:
    """Load the collapsed linear model at ``rate`` requests/s, ``kill()`` after 5 s, ``recover()``: the time until
    two replicas run again, and whether HAProxy had only ready replicas UP meanwhile."""
    stop, traffic = _linear_load(concurrency, rate)
    await asyncio.sleep(5)
    watch = ReadinessWatch(work)
    killed_at = time.monotonic()
    victims = await asyncio.to_thread(kill)
    dead_at = await asyncio.to_thread(wait_dead, victims)
    log(f"{name}: killed {victims} under load ({rate:.0f} requests/s, at most {concurrency} at once)")
    watching = asyncio.create_task(asyncio.to_thread(watch.poll, killed_at + 150, killed_at))
    await asyncio.to_thread(recover)
    fewer = await asyncio.to_thread(wait_for, lambda: running() < 2, 60, "Ray noticing the loss", 0.2)
    back = await asyncio.to_thread(wait_for, lambda: running() == 2, 120, "two replicas running again", 0.5)
    recovered_at = time.monotonic()
    await asyncio.sleep(3)
    stop.set()
    outcomes = await traffic
    watching.cancel()  # the thread ends at its deadline; its findings so far are what counts
    result = summarize(outcomes, killed_at)
    result.update(kill_accounting(outcomes, killed_at, dead_at))
    result["seconds_until_ray_saw_one_replica"] = round(fewer, 1)
    result["seconds_until_two_replicas_serve"] = round(recovered_at - killed_at, 1)
    during = [o for o in outcomes if killed_at <= o.start <= recovered_at]
    result["answers_per_s_while_one_replica"] = round(sum(o.status == "200" for o in during) / max(back, 0.1), 1)
    result["haproxy"] = {"up_seen_at_s": watch.seen, "readiness_checks": watch.checks, "not_ready": watch.not_ready}
    log(f"{name}: {json.dumps(result)}")
    return result


async def haproxy_restart(
    work: Path,
    kill: Callable[[], list[int]],
    serving: Callable[[list[int]], bool],
    concurrency: int = 8,
    rate: float = 40,
) -> dict[str, Any]:
    """Load the collapsed linear model at ``rate`` requests/s, ``kill()`` one node's HAProxy after 5 s: the requests
    that failed, and the time until ``serving(victims)`` (another HAProxy of that node routes to both replicas)."""
    stop, traffic = _linear_load(concurrency, rate)
    await asyncio.sleep(5)
    killed_at = time.monotonic()
    victims = await asyncio.to_thread(kill)
    dead_at = await asyncio.to_thread(wait_dead, victims)
    log(f"HAProxy killed: {victims} under load ({rate:.0f} requests/s, at most {concurrency} at once)")
    try:
        await asyncio.to_thread(wait_for, lambda: serving(victims), 120, "the node's HAProxy back, both UP", 0.25)
    finally:
        recovered_at = time.monotonic()
        await asyncio.sleep(3)
        stop.set()
        outcomes = await traffic
    result = summarize(outcomes, killed_at)
    result["killed"] = len(victims)
    result.update(kill_accounting(outcomes, killed_at, dead_at))
    result["seconds_until_haproxy_serves"] = round(recovered_at - killed_at, 1)
    log(f"HAProxy killed: {json.dumps(result)}")
    return result


def check_failover(aims: Aims, name: str, result: dict[str, Any], aim_s: float) -> None:
    took = result["seconds_until_two_replicas_serve"]
    aims.check(took <= aim_s, f"{name}: two replicas serve again after {took} s (aim {aim_s:.0f} s)")
    check_failed(aims, name, result)
    watched = result["haproxy"]
    aims.check(
        watched["readiness_checks"] > 0 and not watched["not_ready"],
        f"{name}: every server HAProxy added answered /readyz 200 whenever it was UP ({watched['readiness_checks']} "
        f"checks; first UP at {watched['up_seen_at_s']} s after the kill): not ready {watched['not_ready'][:3]}",
    )


async def autoscaling(aims: Aims, work: Path) -> list[tuple[float, int, int, float]]:
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
    url = f"{INGRESS}/predict?model=resnet18-mnist&collapsed=false"
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
    aims.check(up is not None, f"autoscaling 1 -> 2 under load: two replicas running {up} s after the load started")
    aims.check(
        down is not None and stopped_at is not None,
        f"autoscaling 2 -> 1 when the load stopped: one replica {down and stopped_at and round(down - stopped_at, 1)} "
        f"s after it stopped",
    )
    failed = summarize(seen, t0)
    aims.check(
        failed["failed"] == 0,
        f"no request failed while scaling: {failed['failed']} of {failed['requests']} {failed['failures']}",
    )
    return timeline
