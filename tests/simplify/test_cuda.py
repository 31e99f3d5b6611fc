"""The simplifications on CUDA, with TF32 off so float32 results are comparable to the float64 reference."""

import pytest
import torch

from app.nets import set_skip_weight
from app.simplify import simplify
from app.simplify.verify import float64_copy, no_tf32
from tests.helpers import tiny_resnet

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("overrides", [{"activation": "identity"}, {"skips": "annealed"}, {}])
def test_simplify_on_cuda_matches_float64_reference(overrides):
    model = tiny_resnet(**overrides, width=8).cuda()
    if "skips" in overrides:
        set_skip_weight(model, 0.0)
    result = simplify(model, (1, 28, 28))
    assert next(result.module.parameters()).is_cuda
    assert result.report["max_rel_error"] < 1e-5
    x = torch.randn(16, 1, 28, 28, device="cuda", dtype=torch.float64)
    with no_tf32(), torch.no_grad():
        got = result.module(x.float()).double()
        reference = float64_copy(model)(x)
    scale = reference.abs().max().item()
    print(f"max |difference| = {(got - reference).abs().max().item():.3g}, output scale {scale:.3g}")
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-5 * scale)
