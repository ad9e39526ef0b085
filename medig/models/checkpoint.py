# SPDX-License-Identifier: Apache-2.0
"""Weights files as training code writes them: read safely, find the weights, fit their keys.

- :func:`read_checkpoint` reads a ``.safetensors`` file (via the safetensors package) or a
  ``torch.save`` file (``weights_only=True``, see :mod:`medig.models.unpickle`) and finds the
  state dict inside: the file itself, or a ``state_dict`` (Lightning), ``model_state_dict``,
  ``model``, ``net``, ... entry of a training checkpoint. Everything else in the file is kept for
  :mod:`medig.models.metadata` (class names, normalisation, input size).
- :func:`fit_state_dict` matches the keys to an architecture. A key prefix (Lightning's
  ``model.``/``net.``, DataParallel's ``module.``, ``torch.compile``'s ``_orig_mod.``, or any
  wrapper attribute) is stripped only when that makes the keys fit the architecture's own
  state dict, names and shapes; otherwise the error names the closest prefix and what differs.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import Tensor

from medig.models.errors import ModelLoadError
from medig.models.unpickle import Opaque, load_weights_only, opaque_names, unpickling_reason

__all__ = ["Checkpoint", "FittedWeights", "fit_state_dict", "head_outputs", "is_safetensors",
           "read_checkpoint"]

#: Where training checkpoints keep the weights, in the order they are looked for.
WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "model_state",
               "weights", "params", "module")
#: Keys the architecture may lack in the file without changing its outputs (BatchNorm's counter).
_MISSING_OK = ("num_batches_tracked",)
#: Extra keys a file may hold that no forward pass reads (BatchNorm's counter, profiler counters
#: that ``thop`` registers on every module, transformers' constant position ids).
_EXTRA_OK = ("num_batches_tracked", "total_ops", "total_params", "position_ids")
_MAX_PREFIX_DEPTH = 3
#: Attribute names training wrappers keep the network under; among equally fitting prefixes
#: these win (a Lightning module holding ``model`` and an ``ema_model`` copy explains ``model``).
_WRAPPERS = ("model", "net", "network", "module", "_orig_mod", "classifier", "encoder")


@dataclass
class Checkpoint:
    """What a weights file holds.

    Attributes
    ----------
    path : Path
    format : str
        ``"safetensors"`` or ``"torch"``.
    state_dict : dict of str to Tensor
        The weights, keys as stored (prefixes not yet fitted).
    location : str
        Where the weights were inside the file (``""`` for a bare state dict, else the key path
        such as ``"state_dict"``).
    content : Mapping
        The rest of the file, where metadata may be found: the checkpoint dict of a ``torch.save``
        file, or the (JSON-decoded) string metadata of a safetensors file.
    stood_in : list of str
        Globals kept as inert stand-ins instead of being unpickled.
    """

    path: Path
    format: str
    state_dict: dict[str, Tensor]
    location: str = ""
    content: Mapping[str, Any] = field(default_factory=dict)
    stood_in: list[str] = field(default_factory=list)


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file: an 8-byte header length, then a JSON header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < length <= size - 8


def _is_state_dict(obj: Any) -> TypeGuard[Mapping[str, Tensor]]:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()))


def _pickled_refusal(path: Path, names: list[str]) -> ModelLoadError:
    held = f" (it holds {', '.join(sorted(set(names))[:3])})" if names else ""
    return ModelLoadError(
        f"{path} is a pickled object, not a state dict; medig only loads weights_only files"
        f"{held}; save model.state_dict() with torch.save or safetensors, or use torch.export")


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a weights file safely and find the state dict in it.

    Raises
    ------
    ModelLoadError
        Unreadable file, a pickled module or code object where weights should be (never
        unpickled), or no state dict anywhere in the file; one line naming the file.
    """
    path = Path(path)
    if is_safetensors(path):
        return _read_safetensors(path)
    try:
        content, stood_in = load_weights_only(path)
    except pickle.UnpicklingError as error:
        reason = unpickling_reason(error)
        if not reason.startswith(("Unsupported global", "Trying to", "Can only")):
            raise ModelLoadError(f"{path}: cannot read weights: not a torch.save or safetensors "
                                 f"file ({reason})") from None
        raise ModelLoadError(
            f"{path} is a pickled object, not a state dict; medig only loads weights_only files "
            f"({reason}); save model.state_dict() with torch.save or safetensors") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read weights ({exc})".splitlines()[0][:300]) from None
    if _is_state_dict(content):
        return Checkpoint(path, "torch", dict(content), "", {}, stood_in)
    if isinstance(content, Opaque):  # torch.save(model): a pickled module
        raise _pickled_refusal(path, [content.global_name])
    if not isinstance(content, Mapping):
        raise ModelLoadError(f"{path}: expected a state dict (parameter name -> tensor), found "
                             f"{type(content).__name__}")
    found = _find_weights(content, "", 0)
    if found is None:
        keys = ", ".join(map(str, list(content)[:6]))
        # A pickled object where the weights should be (beside them, or as "model") is refused
        # as such; stand-ins elsewhere (hyper-parameters) are only metadata medig ignores.
        refused = [v.global_name for v in content.values() if isinstance(v, Opaque)]
        refused += [n for k in WEIGHT_KEYS if isinstance(content.get(k), Mapping)
                    for n in opaque_names(content[k])]
        if refused:
            raise _pickled_refusal(path, refused)
        raise ModelLoadError(f"{path}: no state dict found (parameter name -> tensor); the file "
                             f"holds keys {keys}; expected the weights at the top level or under "
                             f"one of {', '.join(WEIGHT_KEYS[:4])}")
    state, location = found
    return Checkpoint(path, "torch", dict(state), location, content, stood_in)


def _find_weights(content: Mapping[str, Any], where: str,
                  depth: int) -> tuple[Mapping[str, Tensor], str] | None:
    for key in WEIGHT_KEYS:
        value = content.get(key)
        if _is_state_dict(value):
            return value, f"{where}{key}"
    if depth < 1:  # e.g. {"model": {"state_dict": ...}}
        for key in WEIGHT_KEYS:
            value = content.get(key)
            if isinstance(value, Mapping):
                found = _find_weights(value, f"{where}{key}.", depth + 1)
                if found is not None:
                    return found
    return None


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelLoadError(f"{path}: reading .safetensors needs the safetensors package "
                             "(pip install safetensors)") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
            raw = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - SafetensorError derives from Exception only
        raise ModelLoadError(f"{path}: cannot read safetensors file ({exc})"
                             .splitlines()[0][:300]) from None
    if not state:
        raise ModelLoadError(f"{path}: the safetensors file holds no tensors")
    content: dict[str, Any] = {}
    for key, value in raw.items():  # string metadata; JSON values (lists, objects) decoded
        try:
            content[key] = json.loads(value)
        except (TypeError, ValueError):
            content[key] = value
    return Checkpoint(path, "safetensors", state, "", content, [])


# --------------------------------------------------------------------------------- key fitting
@dataclass
class FittedWeights:
    """A state dict whose keys are the architecture's, and how it was obtained."""

    state_dict: dict[str, Tensor]
    prefix: str  # stripped from every key ("" when the keys fitted as stored)
    ignored: list[str]  # file keys under the prefix that no forward pass reads


@dataclass
class _Candidate:
    prefix: str
    keys: dict[str, Tensor]
    missing: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    extra: list[str]

    @property
    def fits(self) -> bool:
        return not self.missing and not self.mismatched and all(
            k.rsplit(".", 1)[-1] in _EXTRA_OK for k in self.extra)

    @property
    def matched(self) -> int:
        return len(self.keys) - len(self.extra) - len(self.mismatched)


def _prefixes(keys: list[str]) -> list[str]:
    found = {""}
    for key in keys:
        parts = key.split(".")
        for depth in range(1, min(_MAX_PREFIX_DEPTH, len(parts) - 1) + 1):
            found.add(".".join(parts[:depth]) + ".")
    return sorted(found, key=lambda p: (p.count("."), p))


def _candidate(prefix: str, state: Mapping[str, Tensor],
               expected: Mapping[str, torch.Size]) -> _Candidate:
    keys = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = [k for k in expected if k not in keys and k.rsplit(".", 1)[-1] not in _MISSING_OK]
    mismatched = [(k, tuple(keys[k].shape), tuple(shape)) for k, shape in expected.items()
                  if k in keys and tuple(keys[k].shape) != tuple(shape)]
    extra = [k for k in keys if k not in expected]
    return _Candidate(prefix, keys, missing, mismatched, extra)


def fit_state_dict(state: Mapping[str, Tensor], expected: Mapping[str, Any],
                   path: str | os.PathLike, spec: str) -> FittedWeights:
    """The entries of ``state`` that fit an architecture whose own state dict is ``expected``.

    A prefix is stripped only when every key of the architecture is then found with its shape
    (BatchNorm's ``num_batches_tracked`` may be absent) and nothing else is left under the prefix
    but keys no forward pass reads; keys outside the prefix (a Lightning module's loss weights,
    metrics, EMA copies) are not the model's and are left out. Among fitting prefixes the one
    leaving the fewest extra keys wins, then a usual wrapper name (``model.``, ``net.``,
    ``module.``, ...), then the shortest.

    Raises
    ------
    ModelLoadError
        No prefix fits: the message names the closest prefix, how many of the architecture's
        tensors it matches, and the first missing, unexpected or mis-shaped keys.
    """
    shapes = {k: (v.shape if isinstance(v, Tensor) else v) for k, v in expected.items()}
    plain = _candidate("", state, shapes)
    if plain.fits:
        best = plain
    else:
        candidates = [plain] + [_candidate(p, state, shapes) for p in _prefixes(list(state))[1:]]
        fitting = [c for c in candidates if c.fits]
        if not fitting:
            raise ModelLoadError(_no_fit_message(candidates, shapes, path, spec))
        best = min(fitting, key=lambda c: (
            len(c.extra), c.prefix.split(".")[0] not in _WRAPPERS, c.prefix.count("."), c.prefix))
    ignored = list(best.extra)
    weights = {k: v for k, v in best.keys.items() if k in shapes}
    return FittedWeights(weights, best.prefix, ignored)


def head_outputs(state: Mapping[str, Tensor], expected: Mapping[str, Any]) -> int | None:
    """How many outputs the file's classifier head has, against an architecture built with a
    default head: the first dimension of the tensors whose shapes differ from the architecture's
    only there (the head's weight and bias), under the prefix that matches best. None when the
    file and the architecture already agree, or when no single count explains the difference.
    """
    shapes = {k: (v.shape if isinstance(v, Tensor) else v) for k, v in expected.items()}
    candidates = [_candidate(p, state, shapes) for p in _prefixes(list(state))]
    best = max(candidates, key=lambda c: (c.matched + len(c.mismatched), -len(c.missing)))
    counts = {have[0] for _, have, want in best.mismatched
              if len(have) == len(want) and have[1:] == want[1:]}
    if len(counts) == 1 and len(best.mismatched) <= 4:
        return counts.pop()
    return None


def _no_fit_message(candidates: list[_Candidate], shapes: Mapping[str, Any],
                    path: str | os.PathLike, spec: str) -> str:
    best = max(candidates, key=lambda c: (c.matched, -len(c.missing), -len(c.prefix)))
    total = len(shapes)
    where = f"prefix {best.prefix!r}" if best.prefix else "the keys as stored"
    details = []
    if best.mismatched:
        k, have, want = best.mismatched[0]
        more = f" and {len(best.mismatched) - 1} more" if len(best.mismatched) > 1 else ""
        details.append(f"shape of {k} is {list(have)} in the file, {list(want)} in the model{more}")
    if best.missing:
        details.append(f"missing {', '.join(best.missing[:3])}"
                       f"{' ...' if len(best.missing) > 3 else ''} ({len(best.missing)})")
    unexpected = [k for k in best.extra if k.rsplit(".", 1)[-1] not in _EXTRA_OK]
    if unexpected:
        details.append(f"unexpected {', '.join(unexpected[:3])}"
                       f"{' ...' if len(unexpected) > 3 else ''} ({len(unexpected)})")
    hint = _sequential_head_hint(best.missing, unexpected)
    return (f"{path}: the weights do not fit the architecture {spec}: no key prefix makes them "
            f"fit (closest: {where}, {max(best.matched, 0)} of {total} tensors match; "
            f"{'; '.join(details)}){hint}")


def _sequential_head_hint(missing: list[str], unexpected: list[str]) -> str:
    """Training code often swaps the head for ``nn.Sequential(nn.Dropout(p), nn.Linear(...))``:
    ``fc.weight`` is then ``fc.1.weight`` in the file. What the Sequential holds besides the
    Linear (dropout, or a softmax) is not in the weights, so medig does not guess: it says so."""
    heads = {k.rsplit(".", 1)[0] for k in missing}
    for head in sorted(heads):
        inner = [k for k in unexpected if k.startswith(head + ".") and
                 k[len(head) + 1:].split(".")[0].isdigit()]
        if inner:
            return (f"; the file's {head} is a Sequential ({inner[0]}): load it with a "
                    f"package.module:factory that builds the same head")
    return ""
