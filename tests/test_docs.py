"""docs/operations.md names every metric series and every error code the code can produce, and nothing else."""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

import app.serving
from app.config import Settings
from app.serving.app import create_app
from app.serving.errors import ServingError
from app.serving.metrics import REJECTION_REASONS, ServingMetrics
from app.serving.v2.converters import grpc_status

OPERATIONS = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
DOCUMENTED = set(re.findall(r"`([^`\n]+)`", OPERATIONS))
"""Every span the page writes as code."""


def _metric_names() -> set[str]:
    """Each ``foldserve_*`` name a real ServingMetrics exposes (counters with their ``_total``)."""
    metrics = ServingMetrics(CollectorRegistry())
    metrics.add_model("m")
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in metrics.registry.collect()
        if family.name.startswith("foldserve_")
    }


def _error_classes() -> set[type[ServingError]]:
    """Every ServingError subclass defined anywhere under app.serving (the Ray deployment's modules included)."""
    for module in pkgutil.walk_packages(app.serving.__path__, "app.serving."):
        with warnings.catch_warnings():  # Ray's own deprecation warnings, raised as errors by the suite
            warnings.simplefilter("ignore")
            try:
                importlib.import_module(module.name)
            except ModuleNotFoundError as exc:  # an extra that is not installed: its errors cannot be raised either
                if exc.name is not None and exc.name.startswith("app"):
                    raise
    found: set[type[ServingError]] = set()
    todo = [ServingError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def _framework_error_codes(tmp_path: Path) -> set[str]:
    """The codes the app gives errors it does not raise itself: an unknown path, a wrong method, a bad query."""
    settings = Settings(model_store=tmp_path, grpc_port=0)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        answers = [
            client.get("/no-such-path"),
            client.delete("/healthz"),
            client.post("/predict?collapsed=maybe", content=b"x"),
        ]
    return {answer.json()["error"]["code"] for answer in answers}


def _protocol_refusals() -> set[tuple[str, str]]:
    """(status, code) of each refusal the HTTP protocol layer answers before the app sees a request."""
    source = (Path(app.serving.__file__).parent / "http.py").read_text(encoding="utf-8")
    found = set(re.findall(r"_refuse\(\s*(\d{3}),\s*\"(\w+)\"", source))
    assert found, "app/serving/http.py refuses nothing any more: read its codes another way"
    return found


def test_the_metric_names_are_read_from_the_code() -> None:
    names = _metric_names()
    assert {"foldserve_requests_total", "foldserve_variant_runtime_info", "foldserve_model_ready"} <= names


def test_operations_names_every_metric_series() -> None:
    missing = sorted(_metric_names() - DOCUMENTED)
    assert not missing, f"docs/operations.md does not name the metrics {missing}"


def test_operations_names_only_metrics_that_exist() -> None:
    names = _metric_names()
    mentioned = set(re.findall(r"(?<![:\w])(foldserve_[a-z_]+)(?![:\w])", OPERATIONS))
    histogram_parts = {name + suffix for name in names for suffix in ("_bucket", "_sum", "_count")}
    assert not sorted(mentioned - names - histogram_parts)


def test_operations_names_every_rejection_reason() -> None:
    assert not sorted(set(REJECTION_REASONS) - DOCUMENTED)


def test_operations_names_every_error_code_and_status(tmp_path: Path) -> None:
    classes = _error_classes()
    refusals = _protocol_refusals()
    codes = {cls.code for cls in classes} | _framework_error_codes(tmp_path) | {code for _, code in refusals}
    assert {"body_timeout", "too_many_pixels", "model_failed", "overloaded", "not_found"} <= codes
    missing = sorted(codes - DOCUMENTED)
    assert not missing, f"docs/operations.md does not name the error codes {missing}"
    statuses = {str(cls.status_code) for cls in classes} | {status for status, _ in refusals}
    table_statuses = set(re.findall(r"^\| (\d{3}) \|", OPERATIONS, flags=re.MULTILINE))
    assert not sorted(statuses - table_statuses), "an HTTP status the errors use has no row in the error table"


def test_operations_names_every_grpc_status_the_errors_map_to() -> None:
    grpc_codes = {grpc_status(cls("x"))[0].name for cls in _error_classes()}
    assert "UNAVAILABLE" in grpc_codes
    missing = sorted(grpc_codes - DOCUMENTED)
    assert not missing, f"docs/operations.md does not name the gRPC codes {missing}"
