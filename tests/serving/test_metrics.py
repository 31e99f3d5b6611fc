"""Metric declarations: names, buckets, series created up front, and promtool's verdict on them and the rules."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from app.serving.metrics import (
    BATCH_SIZE_BUCKETS,
    FORWARD_PATHS,
    LATENCY_BUCKETS,
    LOAD_STAGES,
    PROTOCOLS,
    REJECTION_REASONS,
    STATUSES,
    ServingMetrics,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_latency_buckets_resolve_microseconds_to_seconds() -> None:
    assert LATENCY_BUCKETS[0] == 1e-5 and LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    assert {1e-5, 5e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0} <= set(LATENCY_BUCKETS)
    # where nearly every answer falls (10 µs to 100 ms), neighbouring bounds are at most 1.7x apart
    fine = [b for b in LATENCY_BUCKETS if b <= 0.1]
    assert max(high / low for low, high in itertools.pairwise(fine)) <= 1.7
    assert BATCH_SIZE_BUCKETS == (1, 2, 4, 8, 16, 32, 64, 128, 256)


def test_series_exist_at_zero_once_a_model_is_added() -> None:
    metrics = ServingMetrics(CollectorRegistry())
    metrics.add_model("linear")
    get = metrics.registry.get_sample_value
    for variant in ("collapsed", "original"):
        labels = {"model": "linear", "variant": variant}
        for protocol in PROTOCOLS:
            for status in STATUSES:  # every status exists at zero: rate() sees the first 415 too
                assert get("foldserve_requests_total", {**labels, "protocol": protocol, "status": status}) == 0
            requests = {**labels, "protocol": protocol}
            assert get("foldserve_request_duration_seconds_count", requests) == 0
        for histogram in ("decode", "queue", "inference"):
            assert get(f"foldserve_{histogram}_duration_seconds_count", labels) == 0
            assert get(f"foldserve_{histogram}_duration_seconds_bucket", {**labels, "le": "1e-05"}) == 0
        for path in FORWARD_PATHS:
            assert get("foldserve_forward_passes_total", {**labels, "path": path}) == 0
        assert get("foldserve_inline", labels) == 0
        assert get("foldserve_batch_size_bucket", {**labels, "le": "256.0"}) == 0
        assert get("foldserve_queue_depth", labels) == 0
        for reason in REJECTION_REASONS:
            assert get("foldserve_rejections_total", {**labels, "reason": reason}) == 0
        assert get("foldserve_model_parameters", labels) == 0
        assert get("foldserve_model_macs", labels) == 0
    for stage in LOAD_STAGES:
        assert get("foldserve_model_load_seconds", {"model": "linear", "stage": stage}) == 0
    assert get("foldserve_verification_error", {"model": "linear", "measure": "max_rel"}) == 0
    assert get("foldserve_load_forward_speedup_ratio", {"model": "linear"}) == 0
    assert get("foldserve_model_ready", {"model": "linear"}) == 0


def test_two_services_do_not_share_series() -> None:
    first, second = ServingMetrics(CollectorRegistry()), ServingMetrics(CollectorRegistry())
    first.add_model("a")
    first.request("a", "collapsed", "predict").done(200, 0.001)
    assert second.registry.get_sample_value("foldserve_requests_total", {"model": "a", "variant": "collapsed"}) is None


@needs_promtool
def test_exposition_passes_promtool_check_metrics() -> None:
    metrics = ServingMetrics(CollectorRegistry())
    metrics.add_model("linear")
    metrics.request("linear", "collapsed", "predict").done(200, 3e-5)
    result = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=generate_latest(metrics.registry), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""  # no lint findings


@needs_promtool
def test_recording_rules_pass_promtool() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(DEPLOY / "rules.yml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 13 rules found" in result.stdout


@needs_promtool
def test_scrape_config_passes_promtool() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "127.0.0.1:8000" in (DEPLOY / "prometheus.yml").read_text()


@needs_promtool
def test_ray_scrape_config_passes_promtool() -> None:
    """The Ray setup's config: both jobs, foldserve relabelled to the hosts' metrics port, the same rules."""
    config = DEPLOY / "prometheus-ray.yml"
    result = subprocess.run([str(PROMTOOL), "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout  # the same rules as for one process
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert set(jobs) == {"ray", "foldserve"}
    assert {"target_label": "job", "replacement": "foldserve"} in jobs["foldserve"]["relabel_configs"]


@needs_promtool
def test_recording_rules_give_hand_worked_values() -> None:
    """p50/p99 interpolation over protocols and per protocol, the original/collapsed ratio, rates, error ratio and
    mean batch size on known series."""
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(DEPLOY / "rules_test.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
