"""The Ray Serve deployment's options, the replica's settings, and deploy/ray/serve.yaml read as Ray reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")

from ray.serve import Application, Deployment
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

import app.serving.ray as ray_door
from app.config import Settings
from app.serving.ray import FoldServeDeployment, RayOptions, build_app, replica_settings

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "ray" / "serve.yaml"


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def apply(deployment: dict[str, Any]) -> Deployment:
    """The deployment's fields from a Serve config applied as Serve applies them, strictly.

    Ray's config schema lets unknown fields through; ``Deployment.options`` refuses unknown options and bad values,
    though not unknown ``autoscaling_config`` keys, which are checked against ``AutoscalingConfig`` here.
    """
    fields = {key: value for key, value in deployment.items() if key != "name"}
    unknown = set(fields.get("autoscaling_config", {})) - set(AutoscalingConfig.model_fields)
    if unknown:
        raise ValueError(f"unknown autoscaling_config fields: {sorted(unknown)}")
    applied: Deployment = FoldServeDeployment.options(**fields)
    return applied


def test_the_serve_config_is_valid_for_ray_and_names_this_deployment() -> None:
    schema = ServeDeploySchema.model_validate(config())
    (application,) = schema.applications
    assert application.import_path == "app.serving.ray:build_app" and application.route_prefix == "/"
    (deployment,) = config()["applications"][0]["deployments"]
    assert deployment["name"] == FoldServeDeployment.name == "FoldServe"
    assert apply(deployment).ray_actor_options["num_cpus"] == 1
    assert isinstance(build_app(application.args), Application)  # the args are RayOptions'


def test_the_serve_config_keeps_two_replicas_and_drains_as_the_single_process() -> None:
    (deployment,) = config()["applications"][0]["deployments"]
    scaling = deployment["autoscaling_config"]
    assert 2 <= scaling["min_replicas"] < scaling["max_replicas"] and scaling["target_ongoing_requests"] > 0
    assert deployment["graceful_shutdown_timeout_s"] == Settings().drain_s
    assert deployment["max_ongoing_requests"] >= Settings().max_batch_size  # a batch can fill under load
    assert deployment["ray_actor_options"]["num_cpus"] >= 1


def test_the_serve_configs_settings_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = config()["applications"][0]["runtime_env"]["env_vars"]
    assert variables and all(name.startswith("FOLDSERVE_") for name in variables)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    Settings()  # raises on a value the service would refuse


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("max_ongoing_request", 64, "unexpected keyword argument 'max_ongoing_request'"),
        ("autoscaling_config", {"min_replica": 2}, r"unknown autoscaling_config fields: \['min_replica'\]"),
        ("autoscaling_config", {"min_replicas": -1}, "greater than or equal to 0"),
        ("ray_actor_options", {"num_cpu": 1}, "Specifying 'num_cpu' in ray_actor_options is not allowed"),
    ],
)
def test_a_broken_deployment_is_refused(field: str, value: Any, refusal: str) -> None:
    """The check above can fail."""
    (deployment,) = config()["applications"][0]["deployments"]
    with pytest.raises((TypeError, ValueError), match=refusal):
        apply({**deployment, field: value})


def test_unknown_application_args_are_refused() -> None:
    with pytest.raises(ValidationError, match="metrics_prot"):
        build_app({"metrics_prot": 8002})


def test_options_are_checked() -> None:
    assert RayOptions().metrics_port == ray_door.DEFAULT_METRICS_PORT == 8002
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        RayOptions(metrics_port=70000)


@pytest.mark.parametrize(("cpus", "torch_threads", "decode_threads"), [(1, 1, 1), (2, 1, 1), (4, 3, 2), (0.5, 1, 1)])
def test_a_replicas_threads_follow_the_cpus_ray_gave_it(cpus: float, torch_threads: int, decode_threads: int) -> None:
    settings = replica_settings(Settings(), cpus)
    assert (settings.torch_threads, settings.decode_threads) == (torch_threads, decode_threads)


def test_thread_settings_that_are_set_are_kept() -> None:
    settings = replica_settings(Settings(torch_threads=6, decode_threads=5), 2)
    assert (settings.torch_threads, settings.decode_threads) == (6, 5)


def test_forked_workers_inside_a_replica_are_refused() -> None:
    with pytest.raises(ValueError, match=r"FOLDSERVE_WORKERS must be 1 in a Ray replica .* got 2"):
        replica_settings(Settings(workers=2), 1)


def test_prometheus_scrapes_the_port_the_replicas_answer_on() -> None:
    scrape = yaml.safe_load((CONFIG.parents[1] / "prometheus" / "prometheus-ray.yml").read_text())
    (foldserve,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "foldserve"]
    port = config()["applications"][0]["args"]["metrics_port"]
    assert port == ray_door.DEFAULT_METRICS_PORT
    assert {
        "source_labels": ["__address__"],
        "regex": r"(.+):\d+",
        "target_label": "__address__",
        "replacement": f"${{1}}:{port}",
    } in foldserve["relabel_configs"]


def test_repository_calls_that_would_reach_one_replica_are_refused() -> None:
    with pytest.raises(ValueError, match="FOLDSERVE_ADMIN_TOKEN is set with FOLDSERVE_MODEL_CONTROL=explicit"):
        replica_settings(Settings(admin_token="secret"), 1)
    assert replica_settings(Settings(admin_token="secret", model_control="poll"), 1).model_control == "poll"
