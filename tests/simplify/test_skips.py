import pytest
import torch

from app.nets import set_skip_weight
from app.simplify import kept_skips, strip_zero_skips
from app.simplify.verify import float64_copy
from tests.helpers import tiny_resnet

X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_all_zero_skips_are_stripped_exactly():
    model = tiny_resnet(skips="annealed")
    set_skip_weight(model, 0.0)
    stripped = strip_zero_skips(model)
    assert all(b.shortcut is None for b in stripped.blocks())
    assert not any(k.endswith("skip_weight") or ".shortcut." in k for k in stripped.state_dict())
    assert kept_skips(stripped) == {}
    # exactly zero skips contribute exactly nothing: identical outputs, not merely close
    assert torch.equal(float64_copy(stripped)(X), float64_copy(model)(X))


def test_nonzero_skips_are_kept_and_listed():
    model = tiny_resnet(skips="annealed")
    set_skip_weight(model, 0.0)
    model.layer2[0].skip_weight.fill_(0.3)  # a projection skip
    model.layer4[1].skip_weight.fill_(1e-30)  # tiny is not zero: kept, not guessed away
    stripped = strip_zero_skips(model)
    assert kept_skips(stripped) == {"layer2.0": pytest.approx(0.3), "layer4.1": pytest.approx(1e-30, rel=1e-6)}
    assert sum(b.shortcut is not None for b in stripped.blocks()) == 2
    assert torch.equal(float64_copy(stripped)(X), float64_copy(model)(X))


def test_standard_skips_are_never_stripped():
    stripped = strip_zero_skips(tiny_resnet())
    assert len(kept_skips(stripped)) == 8


def test_input_model_is_unchanged():
    model = tiny_resnet(skips="annealed")
    set_skip_weight(model, 0.0)
    strip_zero_skips(model)
    assert all(b.shortcut is not None and b.annealed for b in model.blocks())
