"""The protocol's operations over the one data plane: what its REST routes and its gRPC servicer both call.

The doors translate their wire format into the typed objects of :mod:`app.serving.v2.messages` and back; every
rule of the protocol beyond the wire lives here, once:

- **Versions.** A model has one version, its manifest's ``version``. Naming no version means that one; naming
  another is :class:`~app.serving.errors.ModelNotFound` (404, gRPC NOT_FOUND).
- **Variant.** The request parameter ``collapsed`` (a boolean, default true, as ``/predict``'s query parameter)
  picks the simplified or the original network; the response's parameter ``variant`` says which one answered.
- **Inputs.** A request carries exactly one input: ``input``, FP32 ``[N, C, H, W]`` already normalised as the
  model metadata's ``parameters`` say (the network's own tensor, :meth:`DataPlane.infer`), or ``image``, BYTES
  ``[N]`` or ``[N, 1]`` of encoded images, checked, decoded and normalised as ``/predict``'s
  (:meth:`DataPlane.classify`). N runs from 1 to ``FOLDSERVE_MAX_IMAGES_PER_REQUEST``.
- **Outputs.** ``logits`` and ``probabilities``, FP32 ``[N, K]``, and Triton's classification extension
  (:mod:`app.serving.v2.outputs`).
- **Readiness.** The registry's one rule (:meth:`ModelRegistry.readiness`), as ``/readyz``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from app import __version__
from app.serving.dataplane import DataPlane
from app.serving.errors import BadRequest, ModelNotFound, TooManyImages
from app.serving.metrics import RequestClock
from app.serving.registry import Variant
from app.serving.v2.messages import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
)
from app.serving.v2.outputs import OUTPUT_NAMES, build_checked_outputs, check_requested_outputs
from app.store import Manifest

__all__ = [
    "BACKEND",
    "COLLAPSED",
    "EXTENSIONS",
    "IMAGE",
    "INPUT",
    "PLATFORM",
    "SERVER_NAME",
    "VARIANT",
    "InferenceService",
    "requested_collapsed",
]

SERVER_NAME = "foldserve"
PLATFORM = "pytorch_safetensors"
BACKEND = "foldserve"
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "model_repository", "parameters")
"""The protocol's extensions served (``GET /v2``): Triton's binary tensor data, classification, model
configuration and model repository (:mod:`app.serving.repository`) extensions, and request parameters."""

INPUT = "input"
"""The input that carries the network's own tensor: FP32 ``[N, C, H, W]``, normalised."""
IMAGE = "image"
"""The input that carries encoded images (PNG, JPEG, ...): BYTES ``[N]`` or ``[N, 1]``."""
COLLAPSED = "collapsed"
"""The request parameter that picks the variant: true (default) the simplified network, false the original."""
VARIANT = "variant"
"""The response parameter that says which network answered: ``collapsed`` or ``original``."""


def requested_collapsed(request: InferenceRequest) -> bool:
    """The variant ``request`` asks for: its ``collapsed`` parameter, true when absent.

    Raises:
        BadRequest: the parameter is not a boolean.
    """
    value = request.parameters.get(COLLAPSED, True)
    if not isinstance(value, bool):
        raise BadRequest(
            f"request parameter '{COLLAPSED}' must be a boolean (true: the simplified network, false: the "
            f"original), got {value!r}"
        )
    return value


class InferenceService:
    """The Open Inference Protocol over one :class:`DataPlane`: health, metadata, configuration and inference."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.settings = plane.settings

    def server_metadata(self) -> ServerMetadata:
        """The server's name, version and extensions."""
        return ServerMetadata(SERVER_NAME, __version__, EXTENSIONS)

    def server_ready(self) -> bool:
        """The service's readiness, by the same rule as ``/readyz``."""
        return self.plane.models.readiness().ready

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether model ``name`` serves (a model still loading, or failed, does not).

        Raises:
            ModelNotFound: no such model, or a loaded model without that version.
        """
        entry = self.plane.models.get(self._checked_name(name))
        if entry.loaded is None:  # loading or failed: its version is not known
            return False
        _check_version(entry.name, entry.loaded.manifest, version)
        return entry.status == "ready"

    def admit(self, name: str, version: str | None, clock: RequestClock) -> int:
        """Resolve an inference request's model before its body is read (an unknown model costs no upload), count
        it under the default variant until :meth:`infer` knows the one asked for, and return the most tensor
        elements its body may carry: a full batch of the model's input.

        Raises:
            ModelNotFound, ModelNotReady, ModelFailed: as :meth:`variant`.
        """
        variant = self.variant(name, version)
        clock.resolved(variant.model, variant.name)
        return self.settings.max_images_per_request * math.prod(variant.loaded.manifest.input.shape)

    def variant(self, name: str, version: str | None, collapsed: bool = True) -> Variant:
        """The variant a request for model ``name`` (at ``version``, if given) asks for.

        Raises:
            ModelNotFound: no such model or version, or no name. ModelNotReady: it is loading.
            ModelFailed: it failed to load.
        """
        variant = self.plane.variant(self._checked_name(name), collapsed)
        _check_version(variant.model, variant.loaded.manifest, version)
        return variant

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        """Model ``name``'s versions, platform, inputs and outputs, and how to prepare its ``input``.

        Raises:
            ModelNotFound, ModelNotReady: as :meth:`variant`.
        """
        variant = self.variant(name, version)
        manifest = variant.loaded.manifest
        spec, classes = manifest.input, len(manifest.labels)
        return ModelMetadata(
            variant.model,
            (manifest.version,),
            PLATFORM,
            (TensorMetadata(INPUT, "FP32", (-1, *spec.shape)), TensorMetadata(IMAGE, "BYTES", (-1, 1))),
            tuple(TensorMetadata(output, "FP32", (-1, classes)) for output in OUTPUT_NAMES),
            _input_parameters(manifest),
        )

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's model configuration of model ``name``, as JSON: what ``perf_analyzer`` reads.

        ``max_batch_size`` is the batch limit of one request, and dims leave the batch dimension out, as in
        Triton. ``dynamic_batching`` is present when the default (collapsed) variant runs in its batcher: a
        variant measured cheap at load runs a request alone on the event loop whenever nothing waits for it.

        Raises:
            ModelNotFound, ModelNotReady: as :meth:`variant`.
        """
        variant = self.variant(name, version)
        manifest = variant.loaded.manifest
        classes = len(manifest.labels)
        config: dict[str, Any] = {
            "name": variant.model,
            "platform": PLATFORM,
            "backend": BACKEND,
            "max_batch_size": self.settings.max_images_per_request,
            "input": [
                {"name": INPUT, "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [*manifest.input.shape]},
                {"name": IMAGE, "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1], "optional": True},
            ],
            "output": [{"name": output, "data_type": "TYPE_FP32", "dims": [classes]} for output in OUTPUT_NAMES],
            "parameters": {
                key: {"string_value": value if isinstance(value, str) else json.dumps(value)}
                for key, value in _input_parameters(manifest).items()
            },
        }
        if not variant.inline:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": round(self.settings.max_wait_ms * 1000)}
        return config

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, deadline: float, clock: RequestClock
    ) -> InferenceResponse:
        """Run ``request`` through the variant of model ``name`` it asks for, by ``deadline`` (on the event loop's
        clock), counting it under that variant.

        Raises:
            BadRequest: an unknown input or output, a wrong data type or shape, more than one input, or a
                ``collapsed`` parameter that is not a boolean.
            TooManyImages: more images than a request may carry.
            ServingError: whatever :meth:`variant` or the data plane raises (model, images, queue, deadline).
        """
        variant = self.variant(name, version, requested_collapsed(request))
        clock.resolved(variant.model, variant.name)
        wanted = check_requested_outputs(request.outputs)
        tensor = self._only_input(variant, request)
        if tensor.name == IMAGE:
            assert isinstance(tensor.data, tuple)
            inference = await self.plane.classify(variant, list(tensor.data), deadline)
        else:
            assert not isinstance(tensor.data, tuple)
            inference = await self.plane.infer(variant, tensor.data, deadline)
        manifest = variant.loaded.manifest
        outputs = build_checked_outputs(inference.logits(), manifest.labels, wanted)
        return InferenceResponse(variant.model, outputs, manifest.version, request.id, {VARIANT: variant.name})

    def _checked_name(self, name: str) -> str:
        if not name:  # the data plane would take the default model; the protocol always names one
            known = ", ".join(self.plane.models.entries) or "none"
            raise ModelNotFound(f"the request names no model; known models: {known}")
        return name

    def _only_input(self, variant: Variant, request: InferenceRequest) -> InputTensor:
        spec = variant.loaded.manifest.input
        expected = (
            f"'{INPUT}' (FP32 [N, {spec.channels}, {spec.height}, {spec.width}], normalised) or '{IMAGE}' "
            "(BYTES [N] or [N, 1], encoded images)"
        )
        if len(request.inputs) != 1:
            names = ", ".join(f"'{tensor.name}'" for tensor in request.inputs)
            raise BadRequest(f"a request carries one input, {expected}; got {len(request.inputs)}: {names}")
        (tensor,) = request.inputs
        wanted = {INPUT: "FP32", IMAGE: "BYTES"}.get(tensor.name)
        if wanted is None:
            raise BadRequest(f"unknown input '{tensor.name}'; the model's inputs are {expected}")
        if tensor.datatype != wanted:
            raise BadRequest(f"input '{tensor.name}' must be {wanted}, got {tensor.datatype}")
        rows = tensor.shape[0] if tensor.shape else 0
        if tensor.name == INPUT:
            fits = len(tensor.shape) == 4 and tensor.shape[1:] == spec.shape
            shape = f"[N, {spec.channels}, {spec.height}, {spec.width}]"
        else:
            fits = len(tensor.shape) in (1, 2) and tensor.shape[1:] in ((), (1,))
            shape = "[N] or [N, 1]"
        limit = self.settings.max_images_per_request
        if not fits or rows < 1:
            raise BadRequest(
                f"input '{tensor.name}' must have shape {shape} with N from 1 to {limit}, got {list(tensor.shape)}"
            )
        if rows > limit:
            raise TooManyImages(f"input '{tensor.name}' holds {rows} images; a request may carry at most {limit}")
        return tensor


def _check_version(model: str, manifest: Manifest, version: str | None) -> None:
    if version and version != manifest.version:
        raise ModelNotFound(f"model '{model}' has no version '{version}'; its only version is '{manifest.version}'")


def _input_parameters(manifest: Manifest) -> dict[str, Any]:
    """How an image becomes the network's ``input``, for clients that prepare the tensor themselves."""
    spec = manifest.input
    return {
        "channels": spec.channels,
        "height": spec.height,
        "width": spec.width,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "normalisation": "input = (pixel / 255 - mean) / std per channel, after resizing to height x width",
        "labels": list(manifest.labels),
    }
