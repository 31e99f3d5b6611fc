"""Reading a state_dict from another framework's weights file, without ever running code from it.

A ``.safetensors`` file is read with safetensors. A ``.pth``/``.pt`` file is read only with
``torch.load(weights_only=True)``, whose restricted unpickler refuses every global that is not a tensor,
container or number; nothing is unpickled any other way. The common wrappings are undone: a state_dict
stored under ``"state_dict"``, ``"model"`` or ``"model_state_dict"`` (training checkpoints), and a
``module.`` prefix on every key (``DataParallel``/``DistributedDataParallel``).
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

__all__ = ["SUFFIXES", "WRAPPER_KEYS", "ImportRefused", "read_state_dict", "unwrap_state_dict"]

SUFFIXES = (".pth", ".pt", ".safetensors")
"""Weights files the importers read."""

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
"""Keys under which training checkpoints commonly keep the model's state_dict, tried in this order."""

_PREFIX = "module."


class ImportRefused(ValueError):
    """Weights that cannot be imported: the message names the file or key and what is wrong."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in ``path``, unwrapped (see the module docstring), on the CPU.

    Raises:
        ImportRefused: the file is missing, has another suffix, cannot be read safely, or holds no state_dict.
    """
    if path.suffix not in SUFFIXES:
        raise ImportRefused(f"{path.name}: weights must be one of {', '.join(SUFFIXES)} files, got {path.suffix!r}")
    if not path.is_file():
        raise ImportRefused(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ImportRefused(f"{path.name}: unreadable safetensors file: {exc}") from None
        return unwrap_state_dict(tensors, path.name)
    return unwrap_state_dict(_torch_load(path), path.name)


def _torch_load(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "looks like a TorchScript archive": refused below anyway
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ImportRefused(
            f"{path.name}: refused by torch.load(weights_only=True), which reads only tensors, containers and "
            f"numbers: {_unpickling_problem(str(exc))}"
        ) from None
    except Exception as exc:  # a file that is not a torch.save archive fails in many ways: all are refusals
        # the first sentence only: torch goes on to suggest loading the file with weights_only=False
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
        raise ImportRefused(f"{path.name}: not a torch.save file of tensors ({type(exc).__name__}: {first})") from None


_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")


def _unpickling_problem(message: str) -> str:
    """What the restricted unpickler stopped at, without torch's advice to load the file unsafely instead."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return f"the file needs {found.group(1)}"
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(_BOILERPLATE)]
    return useful[0] if useful else "not a plain state_dict"


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The flat ``name -> tensor`` mapping in ``obj``, found directly or under one of :data:`WRAPPER_KEYS`,
    with a ``module.`` prefix removed when every key has it.

    Raises:
        ImportRefused: ``obj`` holds no such mapping; the message names ``source`` and what it holds instead.
    """
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        obj = next((obj[k] for k in WRAPPER_KEYS if k in obj and _is_state_dict(obj[k])), obj)
    if not _is_state_dict(obj):
        raise ImportRefused(f"{source}: holds {_describe(obj)}, not a state_dict (a mapping of names to tensors)")
    state = dict(obj)  # type: ignore[call-overload]
    if all(k.startswith(_PREFIX) for k in state):
        state = {k[len(_PREFIX) :]: v for k, v in state.items()}
    return state


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a mapping with keys {keys}{' …' if len(obj) > 5 else ''}" if obj else "an empty mapping"
    return f"a {type(obj).__name__}"
