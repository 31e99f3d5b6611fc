"""Each runtime against the float64 reference: randomised architectures, failures reported, never served."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.config import RUNTIME_NAMES
from app.importers.torchvision import build_model, config_for
from app.nets import set_skip_weight
from app.runtimes import RUNTIMES, NoRuntimePassed, SelectionOptions, build_candidates, select_runtime, served
from app.simplify import reference_outputs, simplify
from tests.helpers import tiny_resnet
from tests.importers.support import torchvision_resnet

CPU = torch.device("cpu")


def options(*candidates: str, **overrides: object) -> SelectionOptions:
    values: dict[str, object] = {
        "candidates": candidates or RUNTIME_NAMES,
        "device": CPU,
        "threads": 1,
        "tolerance": 1e-4,
        "max_batch_size": 8,
        "rounds": 2,
        "block_seconds": 0.0,
        **overrides,
    }
    return SelectionOptions(**values)  # type: ignore[arg-type]


def imported(arch: str) -> nn.Module:
    """torchvision's ``arch`` with seeded weights and random batch norms, as foldserve's importer builds it."""
    state = torchvision_resnet(arch, num_classes=10).state_dict()
    model, _ = build_model(state, config_for(arch, 10))
    return model


def _annealed(model: nn.Module) -> nn.Module:
    set_skip_weight(model, 0.0)
    return model


NETWORKS = {
    "linear": (lambda: tiny_resnet(1, activation="identity", skips="annealed"), (1, 12, 12)),
    "annealed": (lambda: _annealed(tiny_resnet(2, skips="annealed")), (1, 12, 12)),
    "standard": (lambda: tiny_resnet(3), (1, 12, 12)),
    "torchvision-resnet18": (lambda: imported("resnet18"), (3, 32, 32)),
    "torchvision-resnet50": (lambda: imported("resnet50"), (3, 64, 64)),
}


def test_every_runtime_the_settings_name_exists() -> None:
    assert tuple(RUNTIMES) == RUNTIME_NAMES


@pytest.mark.slow
@pytest.mark.parametrize("network", NETWORKS)
def test_every_runtime_of_both_variants_matches_the_float64_original(network: str) -> None:
    build, shape = NETWORKS[network]
    original = build()
    simplified = simplify(original, shape)
    assert simplified.inputs is not None and simplified.reference is not None
    fresh = torch.randn(5, *shape, generator=torch.Generator().manual_seed(9))
    expected = reference_outputs(original, fresh)
    for variant, module in (("collapsed", simplified.module), ("original", original)):
        reports, built = build_candidates(module, shape, simplified.inputs, simplified.reference, options())
        try:
            assert set(built) == set(RUNTIME_NAMES), {n: r.reason for n, r in reports.items()}
            for name, runtime in built.items():
                errors = reports[name].errors
                assert errors is not None and errors["num_inputs"] == len(simplified.inputs)
                assert errors["max_rel_error"] < 1e-5, (network, variant, name, errors)
                assert errors["top1_agreement"] == 1.0
                got = served(runtime)(fresh).double()
                assert got.dtype == torch.float64 and got.shape == expected.shape
                scale = float(expected.abs().max())
                torch.testing.assert_close(
                    got, expected, atol=1e-5 * scale, rtol=0, msg=lambda m, v=variant, n=name: f"{v} on {n}: {m}"
                )
        finally:
            for runtime in built.values():
                runtime.close()
    assert original.training is False


class ExportsWrong(nn.Module):
    """Computes ``2x`` eagerly and ``3x`` in any exported graph: a runtime that must fail verification."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x.flatten(1))
        return y * 3 if torch.compiler.is_exporting() else y * 2


class DoesNotExport(nn.Module):
    """Branches on a value of its input, which ``torch.export`` cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x.flatten(1))
        if float(y.sum()) > 0:
            return y
        return -y


def _reference(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    return inputs, reference_outputs(module, inputs)


def test_a_runtime_that_misses_the_tolerance_is_reported_and_eager_serves() -> None:
    module = ExportsWrong().eval()
    inputs, reference = _reference(module)
    chosen = select_runtime(module, (1, 2, 2), inputs, reference, options())
    try:
        assert chosen.name == "eager"
        for name in ("onnxruntime", "openvino"):
            report = chosen.candidates[name]
            assert report.status == "failed" and report.graph == "exported"
            assert report.reason is not None and report.reason.startswith("misses the tolerance: max error 0.5 ")
            assert report.errors is not None and report.errors["max_rel_error"] == pytest.approx(0.5, rel=1e-5)
            assert report.latency_s == {}  # never timed
        assert chosen.candidates["eager"].status == "served"
    finally:
        chosen.runtime.close()


def test_a_network_that_does_not_export_is_served_on_eager_with_the_reason() -> None:
    module = DoesNotExport().eval()
    inputs, reference = _reference(module)
    chosen = select_runtime(module, (1, 2, 2), inputs, reference, options())
    assert chosen.name == "eager"
    for name in ("onnxruntime", "openvino"):
        report = chosen.candidates[name]
        assert report.status == "failed" and report.graph is None
        assert report.reason is not None and report.reason.startswith("ONNX export failed:"), report.reason


def test_no_runtime_that_passes_fails_the_variant_with_every_reason() -> None:
    module = ExportsWrong().eval()
    inputs, reference = _reference(module)
    with pytest.raises(
        NoRuntimePassed, match=r"no runtime passed: onnxruntime: misses the tolerance.*openvino: misses"
    ):
        select_runtime(module, (1, 2, 2), inputs, reference, options("onnxruntime", "openvino"))


def test_a_runtime_whose_package_is_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_openvino(name: str, *args: object, **kwargs: object) -> object:
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    module = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    inputs, reference = _reference(module)
    chosen = select_runtime(module, (1, 2, 2), inputs, reference, options())
    report = chosen.candidates["openvino"]
    assert report.status == "unavailable"
    assert report.reason == "openvino is not installed (pip install 'foldserve[openvino]')"
    assert chosen.name in ("eager", "onnxruntime")
    chosen.runtime.close()
