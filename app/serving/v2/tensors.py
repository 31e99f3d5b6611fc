"""Tensor data of the Open Inference Protocol: its data types, and decoding it into what the network takes.

Every door decodes here, whatever carried the data: JSON lists (REST), raw little-endian bytes (REST's binary
extension, gRPC's ``raw_input_contents``) or the typed repeated fields of gRPC's ``InferTensorContents``.

What is accepted (one policy for every door):

- Numeric data types (UINT8 to UINT64, INT8 to INT64, FP16, BF16, FP32, FP64) are decoded into a float32
  tensor, the networks' input type: pixel values sent as UINT8 arrive as the same numbers in float32. Integer
  elements must lie in their type's range and floating-point elements must be finite (no NaN, no infinity,
  nothing beyond float32's range once converted).
- FP16 and BF16 are accepted only as raw bytes: JSON numbers cannot say which 16-bit value is meant (Triton
  refuses them in JSON too, and the gRPC contents message has no field for them).
- BYTES elements are kept as ``bytes`` (JSON strings are encoded as UTF-8).
- BOOL is refused: no network here takes booleans.

Every refusal is a :class:`~app.serving.errors.BadRequest` naming the input and what was expected, except a
request over the element limit, which is a :class:`~app.serving.errors.PayloadTooLarge` like every other
size limit of the service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from app.serving.errors import BadRequest, PayloadTooLarge
from app.serving.v2.binary import deserialize_bytes_elements, serialize_bytes_elements
from app.serving.v2.messages import TensorData

__all__ = [
    "DATATYPES",
    "bytes_tensor",
    "check_datatype",
    "check_element_limit",
    "check_unique_names",
    "describe",
    "element_count",
    "tensor_from_array",
    "tensor_from_json",
    "tensor_from_raw",
    "tensor_to_json",
    "tensor_to_raw",
]

_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
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
    }.items()
}
_INTEGER_DATATYPES = frozenset(name for name, dtype in _NUMPY_DTYPES.items() if dtype.kind in "iu")
_RAW_ONLY_DATATYPES = frozenset({"FP16", "BF16"})
_REFUSED = {"BOOL": "BOOL tensors are not accepted: the networks take numbers (send UINT8 or FP32)"}

DATATYPES = frozenset([*_NUMPY_DTYPES, "BF16", "BYTES", "BOOL"])
"""Every data type the protocol defines (some of them refused, see the module docstring)."""


def element_count(name: str, shape: Sequence[int]) -> int:
    """The number of elements of an input of ``shape``.

    Raises:
        BadRequest: a dimension is negative.
    """
    if any(dim < 0 for dim in shape):
        raise BadRequest(f"input '{name}': shape {list(shape)} has a negative dimension; dimensions must be >= 0")
    return math.prod(shape)


def check_element_limit(shapes: Sequence[tuple[str, Sequence[int]]], max_elements: int) -> None:
    """Refuse a request whose inputs have more than ``max_elements`` elements in all, before decoding any.

    Args:
        shapes: each input's name and shape.
        max_elements: the most elements one request may carry.

    Raises:
        BadRequest: a dimension is negative.
        PayloadTooLarge: the inputs have more elements than allowed.
    """
    counts = [(name, shape, element_count(name, shape)) for name, shape in shapes]
    total = sum(count for _, _, count in counts)
    if total > max_elements:
        sizes = ", ".join(f"'{name}' {list(shape)}" for name, shape, _ in counts)
        raise PayloadTooLarge(
            f"the request's inputs have {total} elements ({sizes}), more than the {max_elements} a request may carry"
        )


def check_unique_names(kind: str, names: Sequence[str]) -> None:
    """Refuse a request that names an input (or output) twice.

    Raises:
        BadRequest: a name appears more than once.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise BadRequest(f"{kind} '{name}' appears more than once; each {kind} may be named once")
        seen.add(name)


def check_datatype(name: str, datatype: str) -> None:
    """Refuse a data type the protocol does not define, or one this service does not accept.

    Raises:
        BadRequest: the data type is unknown or refused (BOOL).
    """
    if datatype in _REFUSED:
        raise BadRequest(f"input '{name}': {_REFUSED[datatype]}")
    if datatype not in DATATYPES:
        accepted = ", ".join(sorted(DATATYPES - {*_REFUSED}))
        raise BadRequest(f"input '{name}': unknown datatype {datatype!r}; expected one of {accepted}")


def tensor_from_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> TensorData:
    """Decode an input's JSON ``data``: a flat list, or lists nested exactly as ``shape``.

    Raises:
        BadRequest: the data type is unknown, refused or raw-only, the lists are ragged or do not follow the
            shape, the element count does not match, or an element has the wrong type or value.
    """
    check_datatype(name, datatype)
    if datatype in _RAW_ONLY_DATATYPES:
        raise BadRequest(f"input '{name}': {datatype} data cannot be sent as JSON; send it as binary data")
    count = element_count(name, shape)
    values = _flatten(name, data, shape)
    if len(values) != count:
        raise BadRequest(f"input '{name}': shape {list(shape)} needs {count} elements, 'data' has {len(values)}")
    if datatype == "BYTES":
        if not all(type(value) is str for value in values):
            index = next(i for i, value in enumerate(values) if type(value) is not str)
            raise BadRequest(f"input '{name}': BYTES element {index} is {describe(values[index])}, expected a string")
        return bytes_tensor(name, shape, [value.encode("utf-8") for value in values])
    return tensor_from_array(name, datatype, shape, _json_numbers(name, datatype, values))


def tensor_from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> TensorData:
    """Decode an input's raw bytes: little-endian, row-major, no padding; BYTES elements length-prefixed.

    Raises:
        BadRequest: the data type is unknown or refused, or the byte count does not match the shape.
    """
    check_datatype(name, datatype)
    count = element_count(name, shape)
    if datatype == "BYTES":
        return deserialize_bytes_elements(name, raw, count)
    itemsize = 2 if datatype == "BF16" else _NUMPY_DTYPES[datatype].itemsize
    if len(raw) != count * itemsize:
        raise BadRequest(
            f"input '{name}': {datatype} shape {list(shape)} needs {count * itemsize} bytes "
            f"({count} elements of {itemsize}), got {len(raw)}"
        )
    if datatype == "BF16":  # a bfloat16 is the upper half of the float32 with the same value
        array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=_NUMPY_DTYPES[datatype])
    return tensor_from_array(name, datatype, shape, array)


def bytes_tensor(name: str, shape: Sequence[int], elements: Sequence[bytes]) -> tuple[bytes, ...]:
    """The elements of a BYTES input, checked against its shape.

    Raises:
        BadRequest: the element count does not match the shape.
    """
    count = element_count(name, shape)
    if len(elements) != count:
        raise BadRequest(f"input '{name}': shape {list(shape)} needs {count} elements, got {len(elements)}")
    return tuple(bytes(element) for element in elements)


def tensor_from_array(name: str, datatype: str, shape: Sequence[int], array: np.ndarray) -> torch.Tensor:
    """A float32 tensor of ``shape`` from the flat numeric elements of an input declared as ``datatype``.

    ``array`` may be wider than ``datatype`` (gRPC carries INT8 in int32 fields): its values are checked
    against the declared type's range.

    Raises:
        BadRequest: the element count does not match, a value is out of range, or one is not finite.
    """
    check_datatype(name, datatype)
    if datatype == "BYTES":
        raise BadRequest(f"input '{name}': BYTES data must be strings, not numbers")
    count = element_count(name, shape)
    if array.size != count:
        raise BadRequest(f"input '{name}': shape {list(shape)} needs {count} elements, got {array.size}")
    if datatype == "FP32":  # the common case: one finiteness check, one (writable) copy
        if not np.isfinite(array).all():
            index = int(np.flatnonzero(~np.isfinite(array))[0])
            raise BadRequest(f"input '{name}': element {index} is {array[index]}; tensor data must be finite")
        return torch.from_numpy(array.astype(np.float32).reshape(tuple(shape)))
    if datatype in _INTEGER_DATATYPES:
        _check_range(name, datatype, array)
    elif not np.isfinite(array).all():
        index = int(np.flatnonzero(~np.isfinite(array))[0])
        raise BadRequest(f"input '{name}': element {index} is {array[index]}; tensor data must be finite")
    with np.errstate(over="ignore"):  # FP64 values beyond float32 become infinite: refused just below
        converted = array.astype(np.float32)
    if not np.isfinite(converted).all():
        index = int(np.flatnonzero(~np.isfinite(converted))[0])
        raise BadRequest(f"input '{name}': element {index} ({array[index]}) is beyond float32's range")
    return torch.from_numpy(converted.reshape(tuple(shape)))


def tensor_to_raw(data: TensorData) -> bytes:
    """An output's raw bytes: float32 little-endian row-major, or length-prefixed BYTES elements."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().contiguous().numpy().astype("<f4", copy=False).tobytes()
    return serialize_bytes_elements(data)


def tensor_to_json(data: TensorData) -> list[float] | list[str]:
    """An output's JSON ``data``: a flat row-major list of numbers, or of strings for BYTES."""
    if isinstance(data, torch.Tensor):
        values: list[float] = data.detach().cpu().reshape(-1).tolist()
        return values
    return [element.decode("utf-8") for element in data]


def _flatten(name: str, data: Any, shape: Sequence[int]) -> list[Any]:
    """The elements of flat ``data``, or of lists nested exactly as ``shape`` (checked level by level)."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list, got {describe(data)}")
    if not (data and isinstance(data[0], list)):
        return data
    level: list[Any] = [data]
    for depth, dim in enumerate(shape):
        items: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != dim:
                found = f"{len(item)} items" if isinstance(item, list) else describe(item)
                raise BadRequest(
                    f"input '{name}': nested 'data' is ragged or does not follow shape {list(shape)}: "
                    f"found {found} at depth {depth}, expected a list of {dim}"
                )
            items.extend(item)
        level = items
    return level


def _json_numbers(name: str, datatype: str, values: list[Any]) -> np.ndarray:
    """Check that JSON elements are numbers of the right kind (integers for integer types; never booleans)."""
    kinds: tuple[type, ...] = (int,) if datatype in _INTEGER_DATATYPES else (int, float)
    if not all(type(value) in kinds for value in values):
        index = next(i for i, value in enumerate(values) if type(value) not in kinds)
        expected = "an integer" if datatype in _INTEGER_DATATYPES else "a number"
        raise BadRequest(
            f"input '{name}': {datatype} element {index} is {describe(values[index])}, expected {expected}"
        )
    wide = np.uint64 if datatype == "UINT64" else np.int64 if datatype in _INTEGER_DATATYPES else np.float64
    try:
        return np.array(values, dtype=wide)
    except OverflowError:  # a Python int beyond 64 bits, or a negative one for UINT64
        index = next(i for i, value in enumerate(values) if not _fits(value, wide))
        raise BadRequest(f"input '{name}': element {index} ({values[index]}) is outside {datatype}'s range") from None


def _fits(value: int | float, dtype: type[np.generic]) -> bool:
    try:
        np.array([value], dtype=dtype)
    except OverflowError:
        return False
    return True


def _check_range(name: str, datatype: str, array: np.ndarray) -> None:
    info = np.iinfo(_NUMPY_DTYPES[datatype])
    if array.size == 0 or np.can_cast(array.dtype, info.dtype, casting="safe"):
        return  # every value of the array's own type fits
    low, high = array.min(), array.max()
    if low < info.min or high > info.max:
        index = int(np.flatnonzero((array < info.min) | (array > info.max))[0])
        raise BadRequest(
            f"input '{name}': element {index} is {array[index]}, outside {datatype}'s range [{info.min}, {info.max}]"
        )


def describe(value: Any) -> str:
    """A short description of a JSON value for error messages: ``int 3``, ``string 'x'``, ``a list``, ``null``."""
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return {list: "a list", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
