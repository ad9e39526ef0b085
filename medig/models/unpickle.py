# SPDX-License-Identifier: Apache-2.0
"""Read ``torch.save`` files with ``weights_only=True``, keeping the objects it would refuse as
inert stand-ins instead of failing the whole file.

Training checkpoints carry more than weights: Lightning's ``hyper_parameters`` often hold a
``pathlib.PosixPath`` (a data folder), an OmegaConf ``DictConfig`` (Hydra), numpy arrays (mean and
std) or an ``argparse.Namespace``. ``torch.load(..., weights_only=True)`` refuses the whole file
for any of them. Here each such global is replaced by a stand-in class that only records the
arguments and state the pickle gives it: no module named in the file is imported and none of its
code runs (the unpickler is still torch's restricted one, told about the stand-ins through the
public :func:`torch.serialization.safe_globals`). Stand-ins of a few plain types are then decoded
from their recorded bytes (numpy arrays and scalars, paths, namespaces, OmegaConf containers);
the rest stay :class:`Opaque` and the caller decides (metadata ignores them, weights refuse them).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["Opaque", "load_weights_only", "opaque_names", "unpickling_reason"]

_MAX_DEPTH = 64


class Opaque:
    """An object of a pickled global medig did not unpickle: the global's name, its arguments
    and its state as the pickle recorded them, and nothing else."""

    global_name: ClassVar[str] = "?"
    args: tuple[Any, ...]  # the arguments the pickle called the global with
    state: Any  # what the pickle's BUILD set (None when it set nothing)

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:  # noqa: PYI034
        self = object.__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls the "class"
        pass

    def __setstate__(self, state: Any) -> None:  # BUILD
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.global_name}: not unpickled>"


def _stand_in(name: str) -> tuple[type, str]:
    return type(name.rsplit(".", 1)[-1], (Opaque,), {"global_name": name}), name


def load_weights_only(path: str | os.PathLike) -> tuple[Any, list[str]]:
    """``torch.load(path, weights_only=True)`` on the CPU, with stand-ins for refused globals.

    Returns
    -------
    (object, names)
        The loaded object, with decodable stand-ins decoded and the others left as
        :class:`Opaque`; ``names`` lists the globals that were stood in for (empty when the plain
        weights-only load succeeded).

    Raises
    ------
    pickle.UnpicklingError
        The file holds something even stand-ins cannot carry (e.g. a blocked module such as
        ``os``, or a dict subclass filled item by item); the message names it.
    OSError, RuntimeError, EOFError, ValueError
        The file is not a readable ``torch.save`` file.
    """
    try:  # reads only the pickle, not the tensors: cheap next to a second full load
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - e.g. a legacy (non-zip) file: the plain load decides
        names = []
    if not names:
        return torch.load(path, map_location="cpu", weights_only=True), []
    stand_ins: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        _stand_in(n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as still:
        raise pickle.UnpicklingError(f"{unpickling_reason(still)} (the file holds "
                                     f"{', '.join(names)})") from None
    return _decode(obj, 0), list(names)


def unpickling_reason(error: BaseException) -> str:
    """The informative line of torch's weights-only refusal (its first lines are boilerplate)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1][:300]
    for line in lines:
        if line.startswith(("Unsupported global", "Trying to", "Can only")):
            return line[:300]
    return (lines[0] if lines else "refused")[:300]


def opaque_names(obj: Any, depth: int = 0) -> list[str]:
    """Names of the globals left as :class:`Opaque` anywhere inside ``obj`` (containers walked)."""
    if depth > _MAX_DEPTH:
        return []
    if isinstance(obj, Opaque):
        return [obj.global_name]
    if isinstance(obj, Mapping):
        return [n for v in obj.values() for n in opaque_names(v, depth + 1)]
    if isinstance(obj, (list, tuple)):
        return [n for v in obj for n in opaque_names(v, depth + 1)]
    return []


# ----------------------------------------------------------------------------------- decoding
def _decode(obj: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Opaque):
        return _decode_opaque(obj, depth)
    if isinstance(obj, dict):  # dict and OrderedDict; mutate in place (keeps the type)
        for key in list(obj):
            obj[key] = _decode(obj[key], depth + 1)
        return obj
    if isinstance(obj, list):
        return [_decode(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_decode(v, depth + 1) for v in obj)
    return obj


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _decode_opaque(obj: Opaque, depth: int) -> Any:
    name, short = obj.global_name, _short(obj.global_name)
    try:
        if name.startswith("numpy") and short == "_reconstruct":
            return _numpy_array(obj)
        if name.startswith("numpy") and short == "scalar":
            return _numpy_scalar(obj)
        if name.startswith("pathlib.") and short.endswith("Path"):
            return str(Path(*[str(p) for p in obj.args]))
        if name == "argparse.Namespace" and isinstance(obj.state, dict):
            return _decode(dict(obj.state), depth + 1)
        if name.startswith("omegaconf."):
            return _omegaconf(obj, depth)
    except (ValueError, TypeError, IndexError):  # malformed bytes: keep the stand-in
        return obj
    return obj


def _numpy_dtype(dtype: Any) -> np.dtype:
    """The dtype a ``numpy.dtype`` stand-in describes; plain numbers and strings only."""
    if not isinstance(dtype, Opaque) or not dtype.args or not isinstance(dtype.args[0], str):
        raise ValueError("not a numpy dtype")
    code = dtype.args[0]
    if code[:1] not in ("b", "i", "u", "f", "c", "U", "S"):
        raise ValueError(f"numpy dtype {code!r} is not plain data")
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "|"
    return np.dtype((order if order in "<>" else "") + code)


def _numpy_array(obj: Opaque) -> np.ndarray:
    # ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b') then BUILD (version, shape, dtype,
    # is_fortran, raw bytes).
    _version, shape, dtype, fortran, raw = obj.state
    dt = _numpy_dtype(dtype)
    data = raw.encode("latin1") if isinstance(raw, str) else raw
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("numpy array without raw bytes")
    array = np.frombuffer(bytes(data), dtype=dt).reshape(shape, order="F" if fortran else "C")
    return array.copy()


def _numpy_scalar(obj: Opaque) -> Any:
    dtype, raw = obj.args[0], obj.args[1]
    data = raw.encode("latin1") if isinstance(raw, str) else raw
    return np.frombuffer(bytes(data), dtype=_numpy_dtype(dtype))[0].item()


def _omegaconf(obj: Opaque, depth: int) -> Any:
    """OmegaConf containers and nodes keep their values in ``_content`` / ``_val``."""
    state = obj.state if isinstance(obj.state, dict) else {}
    if "_content" in state:
        return _plain_omegaconf(_decode(state["_content"], depth + 1))
    if "_val" in state:
        return _decode(state["_val"], depth + 1)
    return obj


def _plain_omegaconf(content: Any) -> Any:
    if isinstance(content, dict):
        return {k: _plain_omegaconf(v) for k, v in content.items()}
    if isinstance(content, list):
        return [_plain_omegaconf(v) for v in content]
    return content
