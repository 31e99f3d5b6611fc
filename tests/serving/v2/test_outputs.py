"""The models' outputs, and Triton's classification extension worked out by hand."""

from __future__ import annotations

import pytest
import torch

from app.serving.errors import BadRequest
from app.serving.v2.messages import InferenceRequest, InputTensor, RequestedOutput
from app.serving.v2.outputs import build_outputs, check_requested_outputs, classify, infer_response

LABELS = ["cat", "dog", "fox", "owl"]


def test_classification_is_value_index_label_highest_first_as_triton_prints_it() -> None:
    # Triton's extension_classification.md: output [1.1, 3.3, 0.5, 2.4], classification 2 -> 3.3 at 1, 2.4 at 3.
    # Its classification.cc prints the value with std::to_string(float), i.e. "%f" of the float32 value.
    output = classify("logits", torch.tensor([[1.1, 3.3, 0.5, 2.4]]), LABELS, 2)
    assert (output.name, output.datatype, output.shape) == ("logits", "BYTES", (1, 2))
    assert output.data == (b"3.300000:1:dog", b"2.400000:3:owl")


def test_classification_is_per_row_and_clipped_to_the_classes() -> None:
    values = torch.tensor([[-1.0, -3.0, 2.5e-7, 12345.678], [0.25, 0.125, 0.5, 0.0625]])
    output = classify("probabilities", values, LABELS, 10)
    assert output.shape == (2, 4)  # Triton: [batch, min(classification, classes)]
    assert output.data == (
        b"12345.677734:3:owl",  # the float32 nearest 12345.678, printed with six decimals
        b"0.000000:2:fox",
        b"-1.000000:0:cat",
        b"-3.000000:1:dog",
        b"0.500000:2:fox",
        b"0.250000:0:cat",
        b"0.125000:1:dog",
        b"0.062500:3:owl",
    )


def test_classification_ties_go_to_the_lower_index() -> None:
    output = classify("logits", torch.tensor([[1.0, 2.0, 2.0, 2.0]]), LABELS, 3)
    assert output.data == (b"2.000000:1:dog", b"2.000000:2:fox", b"2.000000:3:owl")


def test_no_requested_outputs_gives_logits_and_probabilities() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0], [5.0, -5.0, 0.0, 0.0]], dtype=torch.float64)
    outputs = build_outputs(logits, LABELS, [])
    assert [(o.name, o.datatype, o.shape) for o in outputs] == [
        ("logits", "FP32", (2, 4)),
        ("probabilities", "FP32", (2, 4)),
    ]
    assert outputs[0].data.dtype == torch.float32  # type: ignore[union-attr]
    torch.testing.assert_close(outputs[0].data, logits.float(), rtol=0, atol=0)
    expected = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    torch.testing.assert_close(outputs[1].data, expected.float(), rtol=1e-6, atol=0)


def test_requested_outputs_come_back_in_the_requested_order() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    requested = [RequestedOutput("probabilities", classification=1), RequestedOutput("logits")]
    probabilities, raw = build_outputs(logits, LABELS, requested)
    p = torch.softmax(logits.double(), dim=1)[0, 1].item()
    assert probabilities.data == (f"{torch.tensor(p, dtype=torch.float32).item():f}:1:dog".encode(),)
    assert raw.name == "logits" and raw.shape == (1, 4)


def test_unknown_output_is_refused_before_the_model_runs() -> None:
    with pytest.raises(BadRequest) as info:
        check_requested_outputs([RequestedOutput("logits"), RequestedOutput("features")])
    assert info.value.message == "unknown output 'features'; the model's outputs are 'logits' and 'probabilities'"
    with pytest.raises(BadRequest):
        build_outputs(torch.zeros(1, 4), LABELS, [RequestedOutput("features")])


def test_logits_that_do_not_match_the_labels_are_a_bug_not_a_bad_request() -> None:
    with pytest.raises(ValueError, match=r"logits must be \[N, 4\] for 4 labels, got \[1, 3\]"):
        build_outputs(torch.zeros(1, 3), LABELS, [])


def test_infer_response_sends_back_the_request_id() -> None:
    request = InferenceRequest((InputTensor("x", "FP32", (1,), torch.zeros(1)),), id="abc")
    response = infer_response(request, torch.zeros(2, 4), LABELS, model_name="m", model_version="3")
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "abc")
    assert [o.name for o in response.outputs] == ["logits", "probabilities"]
