"""``python -m loadtest soak-faults`` compressed to 45 s: the real service with two workers on the shipped store (the
imported ResNet-18 left out: its load costs the smoke test a minute), a reload of each kind, a worker killed, a
burst, Prometheus scraping, every answer checked."""

import json
import shutil
from pathlib import Path

import pytest

from loadtest.cli import main
from loadtest.scenarios.chaos_faults import fault_times
from tests.helpers import missing

RATE = 30.0
DURATION = 45.0


def test_fault_times_give_a_short_run_every_kind_after_the_quiet_start() -> None:
    times = fault_times(45.0, 10.0)
    assert {kind for _, kind in times} == {"reload", "kill", "burst"}
    assert min(t for t, _ in times) > 10.0 and max(t for t, _ in times) < 43.0
    hour = fault_times(3600.0, 120.0)
    assert [sum(k == kind for _, k in hour) for kind in ("reload", "kill", "burst")] == [58, 12, 6]


@pytest.mark.slow
def test_soak_faults_records_every_request_kill_and_reload(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        missing("the soak scrapes with a real Prometheus: apt-get install prometheus")
    out = tmp_path / "soak"
    args = ["--duration", str(DURATION), "--rate", str(RATE), "--out", str(out), "--no-imported"]
    main(["soak-faults", *args])  # 1 where aims fail

    report = json.loads((out / "soak-faults.json").read_text())
    analysis = report["analysis"]
    assert analysis["requests"] >= 0.9 * RATE * DURATION
    assert {r["series"] for r in report["records"]} == {
        f"{p}:{v}" for p in ("predict", "v2json", "v2binary", "grpc") for v in ("collapsed", "original")
    }
    assert {r["model"] for r in report["records"]} == {p.name for p in Path("model_store").iterdir()}
    assert all(r["status"] != "pending" for r in report["records"])
    assert analysis["aims"]["no wrong answers"]["value"] == 0
    assert len(report["kills"]) >= 1 and all(k["pid"] for k in report["kills"])
    assert report["restarts"] >= 1
    assert [r["kind"] for r in report["reloads"]][:2] == ["good", "corrupt"]
    assert report["reloads"][0]["outcome"] == "as expected"
    assert report["reloads"][1]["reason"]  # the corrupt version's load failed, and says why
    assert len(report["memory"]) >= 2 * (DURATION // 5) - 2
    assert report["tracebacks"] == 0
    prometheus = report["prometheus"]
    assert prometheus["scrapes"] >= 5 and prometheus["scrapes_up"] >= prometheus["scrapes"] - 1, prometheus
    assert sum(prometheus["requests_by_status"].values()) >= analysis["answered_ok"] * 0.8, prometheus
    assert (out / "pss.png").stat().st_size > 0 and (out / "soak-faults.md").exists()
