"""deploy/kubernetes/: every manifest checked against the Kubernetes API's schema offline, strictly, and against
the service (probes, ports, drain, selectors); deliberately broken manifests are refused.

Built-in kinds are checked with the JSON schemas of the Kubernetes API that the ``kubernetes-validate`` package
ships (its "strict" variants refuse unknown fields, as ``kubectl --validate=strict`` does). RayService and
PodMonitor are custom resources: their schemas are the ``openAPIV3Schema`` of the CRDs that KubeRay and the
Prometheus Operator publish, vendored in tests/deploy/crds/ (see its README for where each comes from), made
strict the same way: where a schema lists an object's properties and does not let unknown ones through
(``additionalProperties``, ``x-kubernetes-preserve-unknown-fields``), unknown fields are refused, which is what the
API server's strict field validation does (by default it would drop them silently).
"""

from __future__ import annotations

import copy
import gzip
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CRDS = Path(__file__).with_name("crds")
KUBERNETES_VERSION = "1.34"
CUSTOM = {  # (apiVersion, kind) -> the vendored CRD
    ("ray.io/v1", "RayService"): "ray.io_rayservices.yaml.gz",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml.gz",
}


def manifests() -> dict[str, dict[str, Any]]:
    """Every document of deploy/kubernetes/*.yaml, by file name (one document per file)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        (document,) = yaml.safe_load_all(path.read_text())
        found[path.name] = document
    return found


def strict(schema: Any) -> Any:
    """``schema`` with unknown fields refused wherever it lists the known ones and lets no others through."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    open_ended = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if isinstance(schema.get("properties"), dict) and not open_ended:
        closed["additionalProperties"] = False
    return closed


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    with gzip.open(CRDS / CUSTOM[(api_version, kind)], "rt") as source:
        crd = yaml.safe_load(source)
    assert crd["spec"]["names"]["kind"] == kind
    version = api_version.split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = strict(served["schema"]["openAPIV3Schema"])
    return schema


def validate(document: dict[str, Any]) -> None:
    """Raise unless ``document`` is a valid object of its kind (jsonschema.ValidationError says where)."""
    key = (document["apiVersion"], document["kind"])
    if key in CUSTOM:
        assert document["metadata"]["name"]
        jsonschema.Draft202012Validator(crd_schema(*key)).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(manifests()))
def test_every_manifest_is_valid_against_its_schema(name: str) -> None:
    validate(manifests()[name])


def test_the_manifests_are_those_the_issue_asks_for() -> None:
    kinds = sorted((d["apiVersion"], d["kind"]) for d in manifests().values())
    assert kinds == sorted(
        [
            ("apps/v1", "Deployment"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("monitoring.coreos.com/v1", "PodMonitor"),
            ("monitoring.coreos.com/v1", "PodMonitor"),
            ("policy/v1", "PodDisruptionBudget"),
            ("ray.io/v1", "RayService"),
            ("v1", "Service"),
        ]
    )


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = broken
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return broken


@pytest.mark.parametrize(
    ("name", "path", "value", "refusal"),
    [
        ("deployment.yaml", "spec.replica", 2, "'replica' was unexpected"),
        ("deployment.yaml", "spec.template.spec.containers.0.readinessProbe.httpGet.port", 3.5, "not valid"),
        ("service.yaml", "spec.ports.0.port", "eighty", "'eighty' is not of type 'integer'"),
        ("hpa.yaml", "spec.minReplicas", "two", "'two' is not of type 'integer'"),
        ("pdb.yaml", "spec.maxUnavailabe", 1, "'maxUnavailabe' was unexpected"),
        ("podmonitor.yaml", "spec.podMetricsEndpoint", [], "'podMetricsEndpoint' was unexpected"),
        ("podmonitor.yaml", "spec.podMetricsEndpoints.0.interval", "5 seconds", "does not match"),
        ("rayservice.yaml", "spec.rayClusterConfig.workerGroupSpec", [], "'workerGroupSpec' was unexpected"),
        ("rayservice.yaml", "spec.rayClusterConfig.workerGroupSpecs.0.replicas", "2", "'2' is not of type 'integer'"),
        (
            "rayservice.yaml",
            "spec.rayClusterConfig.workerGroupSpecs.0.template.spec.containers.0.ports.0.containerPort",
            "8000",
            "'8000' is not of type 'integer'",
        ),
    ],
)
def test_broken_manifests_are_refused(name: str, path: str, value: Any, refusal: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=refusal):
        validate(_set(manifests()[name], path, value))


def _container() -> dict[str, Any]:
    container: dict[str, Any] = manifests()["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_probes_ask_the_service_and_the_grace_period_covers_the_drain() -> None:
    container, pod = _container(), manifests()["deployment.yaml"]["spec"]["template"]["spec"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {item["name"]: item["value"] for item in container["env"]}
    drain_s = float(env.get("FOLDSERVE_DRAIN_S", Settings().drain_s))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:2] == ["python3", "-c"] and "sleep(5)" in pre_stop[2]
    assert pod["terminationGracePeriodSeconds"] >= 5 + drain_s + 5  # the preStop, the drain, the process's exit
    workers = manifests()["rayservice.yaml"]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    serve = yaml.safe_load(manifests()["rayservice.yaml"]["spec"]["serveConfigV2"])
    replica_grace = serve["applications"][0]["deployments"][0]["graceful_shutdown_timeout_s"]
    assert workers["terminationGracePeriodSeconds"] > replica_grace


def test_ports_settings_and_selectors_agree() -> None:
    found = manifests()
    pod_labels = found["deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    env = {item["name"]: item["value"] for item in _container()["env"]}
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    assert ports == {"http": int(env["FOLDSERVE_PORT"]), "grpc": int(env["FOLDSERVE_GRPC_PORT"])}
    service = found["service.yaml"]["spec"]
    assert {(p["port"], p["targetPort"]) for p in service["ports"]} == {(8000, "http"), (8001, "grpc")}
    for selector in (
        service["selector"],
        found["pdb.yaml"]["spec"]["selector"]["matchLabels"],
        found["podmonitor.yaml"]["spec"]["selector"]["matchLabels"],
        found["deployment.yaml"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    target = found["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", found["deployment.yaml"]["metadata"]["name"])
    assert found["podmonitor.yaml"]["spec"]["podMetricsEndpoints"][0]["port"] in ports
    settings = Settings(**{k.removeprefix("FOLDSERVE_").lower(): v for k, v in env.items()})
    assert (settings.port, settings.grpc_port, settings.workers) == (8000, 8001, 1)


def test_the_rayservice_serves_the_application_of_the_serve_config() -> None:
    """serveConfigV2 is deploy/ray/serve.yaml, listening on every interface of its pods."""
    embedded = yaml.safe_load(manifests()["rayservice.yaml"]["spec"]["serveConfigV2"])
    config = yaml.safe_load((ROOT / "deploy" / "ray" / "serve.yaml").read_text())
    assert embedded["applications"] == config["applications"]
    assert embedded["http_options"] == {**config["http_options"], "host": "0.0.0.0"}
    assert {k: v for k, v in embedded.items() if k != "http_options"} == {
        k: v for k, v in config.items() if k != "http_options"
    }
    spec = manifests()["rayservice.yaml"]["spec"]["rayClusterConfig"]
    metrics_port = config["applications"][0]["args"]["metrics_port"]
    for group in spec["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        assert {"name": "foldserve-metrics", "containerPort": metrics_port} in container["ports"]
    monitor = manifests()["rayservice-podmonitor.yaml"]["spec"]
    assert {e["port"] for e in monitor["podMetricsEndpoints"]} == {"metrics", "foldserve-metrics"}
    labels = spec["headGroupSpec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()


def test_every_ray_pod_starts_with_the_environment_of_ray_env() -> None:
    """HAProxy and direct ingress are Ray's settings, read where a node starts: deploy/ray/ray.env, in every pod."""
    lines = (line.strip() for line in (ROOT / "deploy" / "ray" / "ray.env").read_text().splitlines())
    wanted = {k: v.strip('"') for k, v in (line.split("=", 1) for line in lines if line and not line.startswith("#"))}
    assert wanted["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    wanted.pop("RAY_SERVE_HAPROXY_NBTHREAD")
    spec = manifests()["rayservice.yaml"]["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        threads = int(env.pop("RAY_SERVE_HAPROXY_NBTHREAD"))  # the pod's CPUs, not make ray-test's nodes'
        assert 1 <= threads <= float(container["resources"]["requests"]["cpu"])
        assert env == {**wanted, "RAY_SERVE_HAPROXY_BINARY_PATH": "/opt/venv/bin/foldserve-haproxy"}
    assert "VIRTUAL_ENV=/opt/venv" in (ROOT / "Dockerfile").read_text()  # where the image installs the command
