import json
import subprocess
import sys

import pytest

from app.__main__ import main
from tests.helpers import tiny_checkpoint


def test_simplify_json_on_a_checkpoint(tmp_path, capsys):
    folder = tiny_checkpoint(tmp_path, activation="identity")
    assert main(["simplify", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny" and report["kind"] == "affine"
    assert report["macs_after"] == 10 * 28 * 28 and report["max_rel_error"] < 1e-5


def test_simplify_text_on_a_random_config(capsys):
    assert main(["simplify", "--config", "depth=18,width=4,skips=annealed"]) == 0
    out = capsys.readouterr().out
    assert "skips-stripped" in out and "max_rel_error" in out


def test_bench_json_reports_every_variant_and_ratio(capsys):
    args = ["bench", "--config", "depth=18,width=4,skips=annealed", "--plain", "--batch-sizes", "1,2"]
    assert main([*args, "--rounds", "2", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    variants = {(r["variant"], r["batch_size"]) for r in result["rows"]}
    assert variants == {(v, b) for v in ("original", "simplified", "plain-folded") for b in (1, 2)}
    assert all(r["median_s"] > 0 and r["threads"] == 1 and r["runs"] == 2 for r in result["rows"])
    assert set(result["speedup"]) == {"1", "2"} and all(v > 0 for v in result["speedup"].values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simplify", "/no/such/model"], "missing manifest file"),
        (["simplify", "--config", "depth=19"], "depth must be one of"),
        (["simplify", "--config", "colour=red"], "--config takes key=value pairs"),
        (["bench", "--config", "depth=18,width=4", "--input", "1x0x28"], "--input takes CxHxW"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert "Traceback" not in proc.stderr
