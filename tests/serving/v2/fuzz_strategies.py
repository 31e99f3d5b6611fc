"""Hypothesis strategies for the v2 fuzz tests: valid requests first, then a few mutations of them.

A request is drawn as the tensors it means (:class:`Tensor`: name, datatype, shape, flat values, JSON or binary),
encoded the way a client would (REST: JSON with Triton's binary tensor data; gRPC: ``ModelInferRequest`` with
raw or typed contents), then mutated at the level where bugs hide: the JSON document, the bytes of the body,
the ``Inference-Header-Content-Length`` value, the BYTES length prefixes, the protobuf fields. Mostly one to
three mutations, so most examples are near-valid and reach deep into the decoders.

Each drawn case says what is known about it: ``valid`` (no mutation, or only ones that keep it valid: the
answer must be the model's for :attr:`Case.tensors`), ``broken`` (a mutation that no parser may accept) or
neither (the answer may go either way; a 200 must then be right for what the service parsed).
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from tests.serving.conftest import SIZE, digit_png

__all__ = [
    "FUZZ_SETTINGS",
    "MAX_IMAGES",
    "Case",
    "GrpcCase",
    "RestCase",
    "Tensor",
    "grpc_cases",
    "rest_cases",
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
_LENGTH = struct.Struct("<I")


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
            return b"".join(_LENGTH.pack(p % 2**32) + v for p, v in zip(prefixes, self.values, strict=True))
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


@dataclass
class RestCase(Case):
    body: bytes = b""
    header_length: str | None = None


@dataclass
class GrpcCase(Case):
    message: pb.ModelInferRequest = field(default_factory=pb.ModelInferRequest)
    wire: bytes | None = None  # the message's bytes, damaged, to send as they are (None: send the message)


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
def _outputs() -> st.SearchStrategy[list[dict[str, Any]]]:
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
def _parameters() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={"collapsed": st.booleans(), "binary_data_output": st.booleans(), "tag": st.text(max_size=4)}
    )


# --------------------------------------------------------------------------------------------------------- REST


@functools.cache
def _tensors(kind: str) -> st.SearchStrategy[list[Tensor]]:
    """``numeric`` or ``bytes``: the model's input of that kind (one), or for the parsers up to three of any."""
    if kind == "model-numeric":
        return st.lists(_images_input(), min_size=1, max_size=1)
    if kind == "model-bytes":
        return st.lists(_encoded_images(), min_size=1, max_size=1)
    if kind == "model":
        return st.lists(_images_input() | _encoded_images(), min_size=1, max_size=1)
    datatypes = {"numeric": (*NUMERIC, "BOOL"), "bytes": ("BYTES",), "any": DATATYPES}[kind]
    return st.lists(_any_tensor(datatypes), min_size=1, max_size=3, unique_by=lambda t: t.name)


def rest_cases(kind: str) -> st.SearchStrategy[RestCase]:
    """REST bodies whose inputs are of ``kind``: ``model-numeric`` or ``model-bytes`` (the model's own ``input``
    or ``image``: for the server), ``numeric`` or ``bytes`` (any tensors of those types: for the parser)."""
    return _rest_case(kind)


@st.composite
def _rest_case(draw: st.DrawFn, kind: str) -> RestCase:
    model_inputs = kind.startswith("model")
    tensors = draw(_tensors(kind))
    outputs = draw(_outputs())
    case = RestCase(tensors, outputs, draw(_parameters()))
    if not all(_is_valid_tensor(t, model_inputs) for t in tensors) or not all(map(_plain_output, outputs)):
        case.mutated("not a valid request as drawn")
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        draw(st.sampled_from(_TENSOR_MUTATIONS))(draw, case)
    document = _document(case)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        draw(st.sampled_from(_DOCUMENT_MUTATIONS))(draw, case, document)
    header = json.dumps(document, separators=(",", ":")).encode()
    blob = b"".join(t.raw() for t in case.tensors if t.binary)
    case.body = header + blob
    case.header_length = str(len(header)) if blob else None
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        draw(st.sampled_from(_BODY_MUTATIONS))(draw, case, len(header))
    return case


def _plain_output(output: dict[str, Any]) -> bool:
    parameters = output.get("parameters", {})
    classification = parameters.get("classification", 1)
    return type(parameters.get("binary_data", True)) is bool and type(classification) is int and classification >= 1


def _is_valid_tensor(tensor: Tensor, model_inputs: bool, *, grpc: bool = False) -> bool:
    """Whether a tensor as drawn is valid: for the parsers (any tensor), or for the model (its inputs)."""
    if tensor.datatype == "BOOL" or (not tensor.binary and tensor.datatype in ("FP16", "BF16")):
        return False
    if model_inputs and tensor.name == "input":
        return tensor.shape[0] <= MAX_IMAGES
    if model_inputs and tensor.name == "image":  # REST's JSON strings are text: there an image goes as binary
        return (tensor.binary or grpc) and all(element in IMAGES for element in tensor.values)
    return True


def _inputs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's inputs that are still objects (a mutation may have replaced any of them)."""
    inputs = document.get("inputs")
    return [item for item in inputs if isinstance(item, dict)] if isinstance(inputs, list) else []


def _document(case: Case) -> dict[str, Any]:
    inputs = []
    for tensor in case.tensors:
        item: dict[str, Any] = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
        if tensor.binary:
            item["parameters"] = {"binary_data_size": len(tensor.raw())}
        else:
            item["data"] = tensor.json_data()
        inputs.append(item)
    document: dict[str, Any] = {"inputs": inputs}
    if case.outputs:
        document["outputs"] = copy.deepcopy(case.outputs)
    if case.parameters:
        document["parameters"] = dict(case.parameters)
    return document


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


_TENSOR_MUTATIONS = [
    _change_shape,
    _change_datatype,
    _poison_value,
    _lie_in_prefix,
    _count_of_elements,
    _damage_element,
    _damage_element,
]


# Mutations of the JSON document.


def _odd_field(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    """A field of the document, an input or an output set to an odd value, or deleted."""
    targets: list[dict[str, Any]] = [document, *_inputs(document)]
    outputs = document.get("outputs")
    targets += [o for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
    target = draw(st.sampled_from(targets))
    keys = (
        ["inputs", "outputs", "parameters", "id"]
        if target is document
        else ["name", "shape", "datatype", "data", "parameters"]
    )
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()) and key in target:
        del target[key]
        case.mutated(f"no {key}")
    else:
        target[key] = draw(st.sampled_from(ODD_VALUES))
        case.mutated(f"{key} odd")


def _binary_data_size(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    binary = [i for i in _inputs(document) if isinstance(i.get("parameters"), dict)]
    if not binary:
        return
    parameters = draw(st.sampled_from(binary))["parameters"]
    size = parameters.get("binary_data_size")
    size = size if type(size) is int else 0
    new = draw(st.sampled_from([-1, 1, 4, -4, 2**63 - 1, "8", 1.0, None, True]))
    parameters["binary_data_size"] = size + new if type(new) is int and abs(new) < 100 else new
    case.mutated("binary_data_size", breaks=type(new) is not int or new < 0 or len(binary) == 1)


def _duplicate_input(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    inputs = _inputs(document)
    if inputs and isinstance(inputs[0].get("name"), str) and inputs[0]["name"]:
        document["inputs"].append(copy.deepcopy(inputs[0]))
        case.mutated("duplicate input", breaks=True)


def _shared_memory(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    inputs = _inputs(document)
    if inputs:
        parameters = draw(st.sampled_from(inputs)).setdefault("parameters", {})
        if isinstance(parameters, dict):
            parameters["shared_memory_region"] = "region"
            case.mutated("shared memory", breaks=True)


def _nest_data(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    """JSON data nested as its shape says (still valid: the same elements), or nested and then made ragged."""
    inputs = [
        i
        for i in _inputs(document)
        if isinstance(i.get("data"), list)
        and isinstance(i.get("shape"), list)
        and len(i["shape"]) >= 2
        and all(type(d) is int and d > 0 for d in i["shape"])
        and int(np.prod(i["shape"])) == len(i["data"])
        and not any(isinstance(value, list) for value in i["data"])  # flat: not nested already
    ]
    if not inputs:
        return
    item = draw(st.sampled_from(inputs))
    item["data"] = _nested(item["data"], item["shape"])
    if draw(st.booleans()):
        innermost = item["data"]
        while isinstance(innermost[-1], list):
            innermost = innermost[-1]
        innermost.pop()
        case.mutated("nested data made ragged", breaks=True)


def _nested(values: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) == 1:
        return list(values)
    step = len(values) // shape[0]
    return [_nested(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


_DOCUMENT_MUTATIONS = [_odd_field, _binary_data_size, _duplicate_input, _shared_memory, _nest_data, _nest_data]


# Mutations of the body's bytes and of its header length.


def _header_length(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    length = len(case.body)
    value = draw(
        st.sampled_from(
            [
                "-1",
                f"-{json_length}",
                "abc",
                "",
                "0",
                "1e3",
                f"+{json_length}",
                "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes
                f"{json_length}.0",
                f" {json_length} ",
                f"0{json_length}",
                str(length + 1),
                str(2**64),
                str(json_length - 1),
                str(json_length + 1),
                None,
            ]
        )
    )
    if value == case.header_length:
        return
    if _says(value, json_length) and case.header_length is not None:  # the same length written otherwise
        if not _says(case.header_length, json_length):
            case.mutated(f"header length {value!r} again")  # undoes an earlier mutation: nothing is known
        case.header_length = value
        return
    breaks = value is not None and not (value.isascii() and value.strip().isdigit() and int(value) <= length)
    breaks = breaks or value == "0" or (value is None and case.header_length is not None)
    case.header_length = value
    case.mutated(f"header length {value!r}", breaks=breaks)


def _says(value: str | None, length: int) -> bool:
    """Whether a header value is ``length`` as the service reads it (surrounding spaces, leading zeros)."""
    return value is not None and value.strip().isascii() and value.strip().isdigit() and int(value) == length


def _truncate(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    cut = draw(st.integers(1, max(1, min(len(case.body) - 1, 64))))
    case.body = case.body[:-cut]
    case.mutated(f"{cut} bytes cut off", breaks=True)


def _extra_bytes(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    extra = draw(st.binary(min_size=1, max_size=16))
    case.body += extra
    case.mutated(f"{len(extra)} bytes appended", breaks=case.header_length is not None or bool(extra.strip()))


def _flip_byte(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    index = draw(st.integers(0, len(case.body) - 1))
    body = bytearray(case.body)
    body[index] ^= draw(st.integers(1, 255))
    case.body = bytes(body)
    case.mutated(f"byte {index} flipped")


_BODY_MUTATIONS = [_header_length, _truncate, _extra_bytes, _flip_byte]


# --------------------------------------------------------------------------------------------------------- gRPC


def grpc_cases(kind: str) -> st.SearchStrategy[GrpcCase]:
    """``ModelInferRequest`` messages: ``model`` (the model's own inputs: for the server) or ``any`` (any tensors:
    for the converter)."""
    return _grpc_case(kind)


@st.composite
def _grpc_case(draw: st.DrawFn, kind: str) -> GrpcCase:
    model_inputs = kind.startswith("model")
    tensors = draw(_tensors(kind))
    raw = draw(st.booleans()) if len(tensors) == 1 else all(t.binary for t in tensors)
    for tensor in tensors:
        tensor.binary = raw
    outputs = [o for o in draw(_outputs()) if _plain_output(o)]
    for output in outputs:
        output.get("parameters", {}).pop("binary_data", None)
    case = GrpcCase(tensors, outputs, draw(_parameters()))
    case.parameters.pop("binary_data_output", None)
    if not all(_is_valid_tensor(t, model_inputs, grpc=True) for t in tensors):
        case.mutated("not a valid request as drawn")
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        draw(st.sampled_from(_TENSOR_MUTATIONS))(draw, case)
    case.message = _message(case)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        draw(st.sampled_from(_MESSAGE_MUTATIONS))(draw, case)
    if model_inputs and draw(st.integers(0, 5)) == 0:
        _damage_wire(draw, case)
    return case


def _damage_wire(draw: st.DrawFn, case: GrpcCase) -> None:
    """The serialized message with a byte changed, bytes cut off, or bytes added: it may no longer parse."""
    wire = bytearray(case.message.SerializeToString())
    how = draw(st.sampled_from(["flip", "cut", "append"]))
    if how == "flip" and wire:
        wire[draw(st.integers(0, len(wire) - 1))] ^= draw(st.integers(1, 255))
    elif how == "cut" and wire:
        del wire[draw(st.integers(0, len(wire) - 1)) :]
    else:
        wire += draw(st.binary(min_size=1, max_size=8))
    case.wire = bytes(wire)
    case.mutated(f"wire bytes: {how}")


_CONTENTS = {
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
    "BOOL": "bool_contents",
}


def _message(case: GrpcCase) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL, id="fuzz")
    for key, value in case.parameters.items():
        _set_parameter(message.parameters[key], value)
    for tensor in case.tensors:
        item = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=[_int64(d) for d in tensor.shape])
        if tensor.binary:
            message.raw_input_contents.append(tensor.raw())
        elif tensor.wire in _CONTENTS:
            field_name = _CONTENTS[tensor.wire]
            values = tensor.values if isinstance(tensor.values, list) else tensor.values.tolist()
            if field_name == "bool_contents":
                values = [bool(v) for v in values]
            getattr(item.contents, field_name).extend(values)
    for output in case.outputs:
        requested = message.outputs.add(name=output["name"])
        for key, value in output.get("parameters", {}).items():
            _set_parameter(requested.parameters[key], value)
    return message


def _int64(value: int) -> int:
    return max(-(2**63), min(2**63 - 1, value))


def _set_parameter(parameter: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = _int64(value)
    elif isinstance(value, float):
        parameter.double_param = value
    elif isinstance(value, str):
        parameter.string_param = value


def _raw_count(draw: st.DrawFn, case: GrpcCase) -> None:
    raw = case.message.raw_input_contents
    if raw and draw(st.booleans()):
        del raw[-1]
    else:
        raw.append(draw(st.binary(max_size=16)))
    case.mutated("raw_input_contents count", breaks=0 < len(raw) != len(case.message.inputs))


def _raw_size(draw: st.DrawFn, case: GrpcCase) -> None:
    raw = case.message.raw_input_contents
    if not raw:
        return
    index = draw(st.integers(0, len(raw) - 1))
    if raw[index] and draw(st.booleans()):
        raw[index] = raw[index][: -draw(st.integers(1, len(raw[index])))]
    else:
        raw[index] = raw[index] + draw(st.binary(min_size=1, max_size=8))
    case.mutated("raw_input_contents size")


def _contents_and_raw(draw: st.DrawFn, case: GrpcCase) -> None:
    item = draw(st.sampled_from(list(case.message.inputs)))
    field_name = draw(st.sampled_from(sorted(set(_CONTENTS.values()))))
    values = {"bytes_contents": [b"x"], "bool_contents": [True], "fp32_contents": [0.5]}.get(field_name, [1])
    getattr(item.contents, field_name).extend(values)
    case.mutated(f"contents {field_name}", breaks=bool(case.message.raw_input_contents))


def _grpc_parameter(draw: st.DrawFn, case: GrpcCase) -> None:
    owner = draw(st.sampled_from(["request", "input", "output"]))
    if owner == "request":
        parameters = case.message.parameters
    elif owner == "input":
        parameters = draw(st.sampled_from(list(case.message.inputs))).parameters
    elif case.message.outputs:
        parameters = draw(st.sampled_from(list(case.message.outputs))).parameters
    else:
        return
    key = draw(st.sampled_from(["collapsed", "classification", "binary_data_size", "shared_memory_region", "z"]))
    parameter = parameters[key]
    value = draw(st.sampled_from([True, False, 0, -1, 3, 2**62, 0.5, "", "true", None]))
    if value is not None:
        _set_parameter(parameter, value)  # None: a parameter with nothing set
    case.mutated(f"{owner} parameter {key}={value!r}")


def _grpc_output(draw: st.DrawFn, case: GrpcCase) -> None:
    name = draw(st.sampled_from(["logits", "probabilities", "", "nope", "logits"]))
    case.message.outputs.add(name=name)
    case.mutated(f"output {name!r}")


def _model(draw: st.DrawFn, case: GrpcCase) -> None:
    case.message.model_name = draw(st.sampled_from(["", "nope", MODEL, MODEL.upper()]))
    case.message.model_version = draw(st.sampled_from(["", "1", "2", "latest"]))
    case.mutated(f"model {case.message.model_name!r} version {case.message.model_version!r}")


_MESSAGE_MUTATIONS = [_raw_count, _raw_size, _contents_and_raw, _grpc_parameter, _grpc_output, _model]
