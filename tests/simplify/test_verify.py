"""evaluated_in_float64: float64 results without a float64 copy, and the model left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.nets import set_skip_weight
from app.simplify import simplify
from app.simplify.verify import compare, evaluated_in_float64, float64_copy
from tests.helpers import tiny_resnet

X = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def state(model: nn.Module) -> dict[str, tuple[int, torch.dtype, torch.Tensor]]:
    """Each tensor of the state dict: the identity of the object, its dtype and a copy of its values."""
    return {name: (id(t), t.dtype, t.clone()) for name, t in model.state_dict(keep_vars=True).items()}


def assert_unchanged(model: nn.Module, before: dict[str, tuple[int, torch.dtype, torch.Tensor]]) -> None:
    after = state(model)
    assert after.keys() == before.keys()
    for name, (identity, dtype, values) in before.items():
        assert after[name][:2] == (identity, dtype), name
        assert torch.equal(after[name][2], values), name


@pytest.mark.parametrize("overrides", [{"activation": "identity"}, {"skips": "annealed"}, {}])
def test_the_result_is_the_float64_copys_and_the_model_is_untouched(overrides: dict[str, str]) -> None:
    model = tiny_resnet(**overrides).eval()
    if "skips" in overrides:
        set_skip_weight(model, 0.0)
    simplified = simplify(model, (1, 28, 28)).module
    for network in (model, simplified):
        before = state(network)
        with torch.no_grad(), evaluated_in_float64(network):
            got = network(X)
        assert got.dtype == torch.float64
        assert torch.equal(got, float64_copy(network)(X))
        assert_unchanged(network, before)


def test_the_model_is_restored_when_a_forward_pass_fails() -> None:
    model = tiny_resnet().eval()
    before = state(model)
    with pytest.raises(RuntimeError), torch.no_grad(), evaluated_in_float64(model):
        model(torch.zeros(1, 3, 28, 28, dtype=torch.float64))  # the model takes one channel
    assert_unchanged(model, before)
    assert not model._forward_pre_hooks and all(not m._forward_hooks for m in model.modules())


class ReadsItsChildsWeight(nn.Module):
    """A forward pass that uses a child's weight without calling the child."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.linear.weight.t()


def test_weights_used_without_their_module_fail_loudly_instead_of_computing_in_float32() -> None:
    model = ReadsItsChildsWeight()
    with pytest.raises(RuntimeError, match=r"(?i)double|float|dtype"), torch.no_grad(), evaluated_in_float64(model):
        model(torch.ones(1, 3, dtype=torch.float64))


def test_compare_leaves_a_training_model_in_training_mode() -> None:
    model = tiny_resnet().train()
    report = compare(model, model, X.float())
    assert model.training and report["max_abs_error"] == 0.0 and report["top1_agreement"] == 1.0
