"""The outputs every foldserve model has over the protocol, and Triton's classification extension.

A classifier answers with two FP32 tensors of shape ``[N, K]`` (N images, K classes): ``logits``, what the
network returns, and ``probabilities``, their softmax. Asking for an output with the parameter
``classification: k`` returns instead, as Triton does, a BYTES tensor ``[N, min(k, K)]`` whose row holds the
image's k highest values of that output as ``"<value>:<index>:<label>"`` strings, highest first. The value is
printed as C++'s ``std::to_string`` prints a float (``printf("%f")``: six decimals), as in Triton's
``classification.cc``; ties, which Triton leaves in no particular order, go to the lower index first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.serving.errors import BadRequest
from app.serving.scores import probabilities, top_k
from app.serving.v2.messages import InferenceRequest, InferenceResponse, OutputTensor, RequestedOutput

__all__ = [
    "LOGITS",
    "OUTPUT_NAMES",
    "PROBABILITIES",
    "build_checked_outputs",
    "build_outputs",
    "check_requested_outputs",
    "classify",
    "infer_response",
]

LOGITS = "logits"
PROBABILITIES = "probabilities"
OUTPUT_NAMES = (LOGITS, PROBABILITIES)
"""The outputs of every model, in the order they are returned when a request names none."""


def check_requested_outputs(requested: Sequence[RequestedOutput]) -> tuple[RequestedOutput, ...]:
    """The outputs to answer with (all, as tensors, when the request named none), once outputs a model does not
    have are refused; call it before running the model.

    Raises:
        BadRequest: an output is neither ``logits`` nor ``probabilities``.
    """
    for output in requested:
        if output.name not in OUTPUT_NAMES:
            raise BadRequest(
                f"unknown output '{output.name}'; the model's outputs are '{LOGITS}' and '{PROBABILITIES}'"
            )
    return tuple(requested) or tuple(RequestedOutput(name) for name in OUTPUT_NAMES)


def build_outputs(
    logits: torch.Tensor, labels: Sequence[str], requested: Sequence[RequestedOutput]
) -> tuple[OutputTensor, ...]:
    """The outputs a request asked for (all, as tensors, when it named none), in the order it named them.

    Args:
        logits: the network's answer, ``[N, K]``.
        labels: the K class labels, used in classification strings.
        requested: the request's outputs.

    Raises:
        BadRequest: an output is unknown.
    """
    return build_checked_outputs(logits, labels, check_requested_outputs(requested))


def build_checked_outputs(
    logits: torch.Tensor, labels: Sequence[str], wanted: Sequence[RequestedOutput]
) -> tuple[OutputTensor, ...]:
    """:func:`build_outputs`, for outputs :func:`check_requested_outputs` returned."""
    if logits.dim() != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"logits must be [N, {len(labels)}] for {len(labels)} labels, got {list(logits.shape)}")
    values = {LOGITS: logits.detach().cpu().float()}
    if any(output.name == PROBABILITIES for output in wanted):
        rows = [probabilities(row) for row in values[LOGITS].tolist()]
        values[PROBABILITIES] = torch.tensor(rows, dtype=torch.float32)  # float64 rounded once
    return tuple(
        classify(output.name, values[output.name], labels, output.classification)
        if output.classification
        else OutputTensor(output.name, "FP32", tuple(values[output.name].shape), values[output.name])
        for output in wanted
    )


def classify(name: str, values: torch.Tensor, labels: Sequence[str], count: int) -> OutputTensor:
    """Triton's classification of ``values`` (``[N, K]``): each row's ``count`` highest as BYTES strings."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    k = min(count, values.shape[1])
    strings = tuple(
        f"{row[index]:f}:{index}:{labels[index]}".encode() for row in values.tolist() for index in top_k(row, k)
    )
    return OutputTensor(name, "BYTES", (values.shape[0], k), strings)


def infer_response(
    request: InferenceRequest,
    logits: torch.Tensor,
    labels: Sequence[str],
    *,
    model_name: str,
    model_version: str | None = None,
) -> InferenceResponse:
    """The whole answer to ``request`` from the network's ``logits``: its outputs, and its id sent back."""
    outputs = build_outputs(logits, labels, request.outputs)
    return InferenceResponse(model_name, outputs, model_version, request.id)
