"""Hypothesis strategies shared by the v2 fuzz tests: the tensors a request means, and their mutations.

A request is drawn as the tensors it means (:class:`Tensor`: name, datatype, shape, flat values, JSON or binary),
encoded the way a client would (:mod:`tests.serving.v2.fuzz_rest`: JSON with Triton's binary tensor data;
:mod:`tests.serving.v2.fuzz_grpc_messages`: ``ModelInferRequest`` with raw or typed contents), then mutated at
the level where bugs hide: the tensors (here), the JSON document, the bytes of the body, the
``Inference-Header-Content-Length`` value, the BYTES length prefixes, the protobuf fields and their bytes. Mostly
one to three mutations, so most examples are near-valid and reach deep into the decoders.

Each drawn case says what is known about it: ``valid`` (no mutation: the answer must be the model's for
:attr:`Case.tensors`), ``broken`` (one mutation, one that no parser may accept) or neither (the answer may go
either way; a 200 must then be right for what the service parsed).
"""

from __future__ import annotations

import functools
import io
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from tests.serving.conftest import SIZE, digit_png

__all__ = [
    "DATATYPES",
    "FUZZ_SETTINGS",
    "IMAGES",
    "MAX_IMAGES",
    "MODEL",
    "ODD_VALUES",
    "TENSOR_MUTATIONS",
    "Case",
    "Tensor",
    "plain_output",
    "request_parameters",
    "requested_outputs",
    "tensor_lists",
    "valid_tensor",
]

EXAMPLES = int(os.environ.get("FOLDSERVE_FUZZ_EXAMPLES", "200"))
"""Examples per fuzz test: small in the suite, 10,000 in ``make fuzz``."""

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared CI machine makes per-example times noisy; hangs are caught by each call's timeout
    derandomize=True,  # the same examples on every run: the suite is deterministic
    database=None,  # nothing written into the checkout
    # the model and server are module fixtures, built once, shared by every example on purpose; large bodies
    # (a batch of FP32 images) are the point
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large, HealthCheck.too_slow],
    print_blob=True,
)

MODEL = "linear"
MAX_IMAGES = 4
IMAGE_SHAPE = (1, SIZE, SIZE)
PNGS = [digit_png(seed, size) for seed, size in ((0, 20), (1, 12), (2, 33), (3, 8))]


def _jpeg(seed: int, size: int, **options: Any) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


IMAGES = [*PNGS, _jpeg(4, 16), _jpeg(5, 24, progressive=True)]
"""Whole images: every one decodes (to the model's input size, whatever its own)."""

NUMERIC = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64")
DATATYPES = (*NUMERIC, "BYTES", "BOOL")
_DTYPES = {
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
# odd JSON values for a field to take
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(2**63) - 1,
    1.5,
    float("nan"),
    "",
    "x",
    "FP32",
    [],
    [1],
    {},
    {"a": 1},
    "\ud800",  # a lone surrogate: a valid JSON escape, not Unicode text
    "caf\u00e9 \U0001f600",
]
LENGTH = struct.Struct("<I")


@dataclass
class Tensor:
    """One input as the client means it: ``values`` are flat (numbers, or the elements of a BYTES tensor)."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[bytes]
    binary: bool  # REST: in the binary part; gRPC: in raw_input_contents
    prefixes: list[int] | None = None  # BYTES in binary: each element's length prefix (mutated to lie)
    wire: str = ""  # the data type the values are encoded as (the datatype as drawn, whatever it is mutated to)

    def __post_init__(self) -> None:
        self.wire = self.wire or self.datatype

    def raw(self) -> bytes:
        """The tensor's binary data, as the binary extension and raw_input_contents carry it."""
        if isinstance(self.values, list):
            prefixes = self.prefixes or [len(v) for v in self.values]
            return b"".join(LENGTH.pack(p % 2**32) + v for p, v in zip(prefixes, self.values, strict=True))
        if self.wire == "BF16":
            return (self.values.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        with np.errstate(invalid="ignore", over="ignore"):  # a poisoned element cast to an integer type
            return self.values.astype(_DTYPES.get(self.wire, "<u1")).tobytes()

    def json_data(self) -> list[Any]:
        if isinstance(self.values, list):
            return [v.decode("utf-8", "replace") for v in self.values]
        return self.values.tolist()


@dataclass
class Case:
    """A drawn request: what it means, and what is known about the answer it must get."""

    tensors: list[Tensor]
    outputs: list[dict[str, Any]]  # REST requested outputs (gRPC translates them)
    parameters: dict[str, Any]
    mutations: list[str] = field(default_factory=list)
    breaking: bool = False  # the first mutation was one that no parser may accept

    @property
    def valid(self) -> bool:
        """No mutation at all: the answer must be 200 and the model's own."""
        return not self.mutations

    @property
    def broken(self) -> bool:
        """One mutation, one that no parser may accept: the answer must be a refusal. (A later mutation could
        undo an earlier one, a shape made to fit the count again: with several, nothing is known.)"""
        return self.breaking and len(self.mutations) == 1

    def mutated(self, what: str, *, breaks: bool = False) -> None:
        if not self.mutations:
            self.breaking = breaks
        self.mutations.append(what)


# ---------------------------------------------------------------------------------------------------------- tensors


@st.composite
def _images_input(draw: st.DrawFn) -> Tensor:
    """The model's ``input``: FP32 [N, 1, SIZE, SIZE], normalised, N mostly within the limit."""
    rows = draw(st.integers(1, MAX_IMAGES + 1) if draw(st.booleans()) else st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal(rows * SIZE * SIZE).astype(np.float32)
    return Tensor("input", "FP32", [rows, *IMAGE_SHAPE], values, draw(st.booleans()))


@st.composite
def _encoded_images(draw: st.DrawFn) -> Tensor:
    """The model's ``image``: BYTES [N] or [N, 1] of encoded images (some of them junk)."""
    rows = draw(st.integers(1, MAX_IMAGES))
    junk = st.binary(max_size=40) | st.sampled_from([b"\x89PNG\r\n\x1a\n", PNGS[0][:50], b"\xff\xd8\xff"])
    elements = [draw(st.sampled_from(IMAGES) if draw(st.integers(0, 5)) else junk) for _ in range(rows)]
    shape = [rows] if draw(st.booleans()) else [rows, 1]
    return Tensor("image", "BYTES", shape, elements, binary=draw(st.integers(0, 4)) > 0)


@st.composite
def _any_tensor(draw: st.DrawFn, datatypes: tuple[str, ...]) -> Tensor:
    """A tensor of one of ``datatypes`` and a small shape, its values inside the type's range (for the parsers)."""
    datatype = draw(st.sampled_from(datatypes))
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
    count = int(np.prod(shape)) if shape else 1
    binary = draw(st.booleans())
    if datatype == "BYTES":
        text = st.text(max_size=8).map(str.encode) if not binary else st.binary(max_size=12)
        return Tensor(
            draw(st.sampled_from(["x", "image"])),
            datatype,
            shape,
            draw(st.lists(text, min_size=count, max_size=count)),
            binary,
        )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if datatype == "BOOL":
        values = rng.integers(0, 2, count).astype(np.uint8)
    elif datatype.startswith(("UINT", "INT")):
        info = np.iinfo(np.dtype(_DTYPES[datatype]))
        values = rng.integers(info.min, info.max, count, dtype=np.dtype(_DTYPES[datatype]), endpoint=True)
    else:  # FP16 reaches 65504
        scale = draw(st.sampled_from([1.0, 100.0] if datatype == "FP16" else [1.0, 100.0, 1e4]))
        values = (rng.standard_normal(count) * scale).astype(np.float32)
    return Tensor(draw(st.sampled_from(["x", "input", "pixels"])), datatype, shape, values, binary)


@functools.cache
def requested_outputs() -> st.SearchStrategy[list[dict[str, Any]]]:
    name = st.sampled_from(["logits", "probabilities"])
    parameters = st.fixed_dictionaries(
        {},
        optional={
            "binary_data": st.booleans() | st.sampled_from(ODD_VALUES),
            "classification": st.integers(1, 7) | st.sampled_from(ODD_VALUES),
        },
    )
    output = st.builds(lambda n, p: {"name": n, **({"parameters": p} if p else {})}, name, parameters)
    return st.lists(output, max_size=2, unique_by=lambda o: o["name"])


@functools.cache
def request_parameters() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={"collapsed": st.booleans(), "binary_data_output": st.booleans(), "tag": st.text(max_size=4)}
    )


@functools.cache
def tensor_lists(kind: str) -> st.SearchStrategy[list[Tensor]]:
    """``numeric`` or ``bytes``: the model's input of that kind (one), or for the parsers up to three of any."""
    if kind == "model-numeric":
        return st.lists(_images_input(), min_size=1, max_size=1)
    if kind == "model-bytes":
        return st.lists(_encoded_images(), min_size=1, max_size=1)
    if kind == "model":
        return st.lists(_images_input() | _encoded_images(), min_size=1, max_size=1)
    datatypes = {"numeric": (*NUMERIC, "BOOL"), "bytes": ("BYTES",), "any": DATATYPES}[kind]
    return st.lists(_any_tensor(datatypes), min_size=1, max_size=3, unique_by=lambda t: t.name)


def plain_output(output: dict[str, Any]) -> bool:
    parameters = output.get("parameters", {})
    classification = parameters.get("classification", 1)
    return type(parameters.get("binary_data", True)) is bool and type(classification) is int and classification >= 1


def valid_tensor(tensor: Tensor, model_inputs: bool, *, grpc: bool = False) -> bool:
    """Whether a tensor as drawn is valid: for the parsers (any tensor), or for the model (its inputs)."""
    if tensor.datatype == "BOOL" or (not tensor.binary and tensor.datatype in ("FP16", "BF16")):
        return False
    if model_inputs and tensor.name == "input":
        return tensor.shape[0] <= MAX_IMAGES
    if model_inputs and tensor.name == "image":  # REST's JSON strings are text: there an image goes as binary
        return (tensor.binary or grpc) and all(element in IMAGES for element in tensor.values)
    return True


# Mutations of the tensors, before they are encoded (shared by REST and gRPC).


def _change_shape(draw: st.DrawFn, case: Case) -> None:
    tensor = draw(st.sampled_from(case.tensors))
    shape = list(tensor.shape)
    how = draw(st.sampled_from(["dim", "append", "drop", "empty", "huge", "negative"]))
    if how == "dim" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] += draw(st.sampled_from([-1, 1, 2]))
    elif how == "append":
        shape.append(draw(st.sampled_from([0, 1, 2])))
    elif how == "drop" and shape:
        shape.pop(draw(st.integers(0, len(shape) - 1)))
    elif how == "empty":
        shape = []
    elif how == "huge":
        shape = [2**40, *shape[1:]]
    elif how == "negative" and shape:
        shape[0] = -shape[0] or -1
    tensor.shape = shape
    case.mutated(f"shape {how}", breaks=how == "negative" and bool(shape))


def _change_datatype(draw: st.DrawFn, case: Case) -> None:
    tensor = draw(st.sampled_from(case.tensors))
    new = draw(st.sampled_from([*DATATYPES, "fp32", "FLOAT", "", "STRING"]))
    if new == tensor.datatype:
        return
    tensor.datatype = new
    case.mutated(f"datatype {new}", breaks=new not in DATATYPES or new == "BOOL")


def _poison_value(draw: st.DrawFn, case: Case) -> None:
    tensor = draw(st.sampled_from(case.tensors))
    if isinstance(tensor.values, list) or tensor.values.size == 0 or tensor.wire not in ("FP32", "FP16"):
        return
    values = tensor.values.astype(np.float32)
    values[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    tensor.values = values
    case.mutated("non-finite element", breaks=True)


def _lie_in_prefix(draw: st.DrawFn, case: Case) -> None:
    tensor = draw(st.sampled_from(case.tensors))
    if not isinstance(tensor.values, list) or not tensor.values or not tensor.binary:
        return
    prefixes = tensor.prefixes or [len(v) for v in tensor.values]
    index = draw(st.integers(0, len(prefixes) - 1))
    lie = draw(st.sampled_from([-1, 1, 4, 2**31, 2**32 - 1]))
    prefixes[index] = max(0, prefixes[index] + lie) if lie < 2**31 else lie
    tensor.prefixes = prefixes
    case.mutated("BYTES length prefix", breaks=prefixes[index] > len(tensor.raw()))


def _count_of_elements(draw: st.DrawFn, case: Case) -> None:
    tensor = draw(st.sampled_from(case.tensors))
    if not isinstance(tensor.values, list):
        return
    tensor.prefixes = None
    if tensor.values and draw(st.booleans()):
        tensor.values = tensor.values[:-1]
    else:
        tensor.values = [*tensor.values, draw(st.sampled_from([b"", PNGS[1]]))]
    case.mutated("BYTES element count", breaks=True)


def _damage_element(draw: st.DrawFn, case: Case) -> None:
    """One element of a BYTES tensor (an encoded image, mostly) with a byte changed, or cut short."""
    tensor = draw(st.sampled_from(case.tensors))
    if not isinstance(tensor.values, list) or not any(tensor.values):
        return
    index = draw(st.sampled_from([i for i, v in enumerate(tensor.values) if v]))
    element = bytearray(tensor.values[index])
    if draw(st.booleans()):
        element[draw(st.integers(0, len(element) - 1))] ^= draw(st.integers(1, 255))
    else:
        del element[draw(st.integers(0, len(element) - 1)) :]
    tensor.values = [*tensor.values[:index], bytes(element), *tensor.values[index + 1 :]]
    tensor.prefixes = None
    case.mutated(f"BYTES element {index} damaged")


TENSOR_MUTATIONS = [
    _change_shape,
    _change_datatype,
    _poison_value,
    _lie_in_prefix,
    _count_of_elements,
    _damage_element,
    _damage_element,
]
