# SPDX-License-Identifier: Apache-2.0
"""What a model needs besides its weights: class names, normalisation, input size, default target.

Each piece comes from the first of these that has it, and the source is recorded for the manifest:

1. arguments (``load_model(class_names=..., mean=..., ...)``, the CLI's ``--classes``, ``--mean``,
   ``--std``, ``--input-size``, ``--model-arg``);
2. a JSON file beside the weights or model (``<file>.json`` or ``<file>.<ext>.json``);
3. the checkpoint itself (a training checkpoint's dict, or a safetensors file's metadata);
4. the architecture (the input size a vision transformer was built for).

Checkpoints are read liberally, because training code stores these pieces in many ways: class
names under ``classes``, ``class_names``, ``labels``, ``idx_to_class`` (int or str keys),
``class_to_idx``, ``id2label``; mean/std at the top level or nested under ``hyper_parameters``,
``preprocessing``, ``normalization``, ``transforms``, ... (lists, tuples, numpy arrays, tensors,
``"0.485,0.456,0.406"`` strings); input size as ``image_size``, ``input_size``, ``img_size`` (an
int, ``[H, W]`` or ``[C, H, W]``). A checkpoint value that does not make sense is skipped with a
note; the same value given as an argument or in the JSON file is an error.

Normalisation units: medig feeds the model pixels in [0, 1]. Statistics with any value above 1
(e.g. mean 123.675, 116.28, 103.53 and std 58.395, 57.12, 57.375, as mmcv/detectron configs
write them) are in 0-255 units; both mean and std are then divided by 255, and a note says so.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medig.models.errors import ModelArgumentError, ModelLoadError
from medig.models.unpickle import Opaque

__all__ = ["ModelMetadata", "from_arguments", "from_checkpoint", "from_json", "merge_metadata",
           "sidecar_path"]

_NAME_KEYS = ("class_names", "classes", "classnames", "labels", "label_names", "target_names",
              "categories", "idx_to_class", "id2label", "class_to_idx", "label2id")
_COUNT_KEYS = ("num_classes", "n_classes", "nb_classes", "num_labels", "classes")
_MEAN_KEYS = ("mean", "norm_mean", "image_mean", "pixel_mean", "rgb_mean", "normalize_mean")
_STD_KEYS = ("std", "norm_std", "image_std", "pixel_std", "rgb_std", "normalize_std")
_SIZE_KEYS = ("image_size", "input_size", "img_size")
#: Keys declaring the class or group an audit explains by default. ``target`` is read only at
#: the top level of a file: nested in hyper-parameters it usually names a data column.
_TARGET_KEYS = ("positive_class", "positive_classes", "positive", "default_target")
#: Not searched for metadata: weights, optimiser and loop state, callbacks.
_SKIP_KEYS = frozenset({
    "state_dict", "model_state_dict", "model", "net", "network", "model_state", "weights",
    "params", "module", "optimizer", "optimizer_states", "optimizer_state_dict", "optimizers",
    "lr_schedulers", "scheduler", "schedulers", "scheduler_state_dict", "callbacks", "loops",
    "state_dict_ema", "model_ema", "ema", "scaler", "amp", "grad_scaler",
})
_MAX_DEPTH = 4
_PIECES = ("class_names", "num_classes", "mean", "std", "input_size", "target")


@dataclass
class ModelMetadata:
    """The pieces found in one place (or merged from several), with where each came from.

    Attributes
    ----------
    class_names : list of str or None
    num_classes : int or None
        Number of outputs when stated without names (``num_classes`` in hyper-parameters).
    mean, std : tuple of float or None
        Per-channel normalisation for pixels in [0, 1].
    input_size : int or None
        Side of the square input.
    target : str, int, list, dict or None
        The declared default target as written (a class, ``"NAME=C1,C2"``, a list of classes,
        ``{"name": ..., "classes": [...]}``); resolved against the class names by the loader.
    kwargs : dict
        Constructor arguments for the architecture.
    sources : dict of str to str
        For each piece found, where: ``"argument"``, ``"JSON <file>"``, ``"checkpoint <key>"``,
        ``"architecture"``.
    notes : list of str
        What was done or skipped on the way (units converted, values ignored).
    """

    class_names: list[str] | None = None
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None
    target: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- value parsing
class _Invalid(ValueError):
    """A metadata value that does not make sense (message: what is wrong)."""


class _Skip(_Invalid):
    """A value of another kind than the piece sought (``classes: 5`` is a count, not names)."""


def _numbers(value: Any) -> list[float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().flatten().tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy
        value = value.tolist()
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").replace("(", " ").replace(")", " ")
                 .replace("[", " ").replace("]", " ").split() if v]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _Invalid(f"expected a list of numbers, got {value!r}"[:120])
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise _Invalid(f"expected numbers, got {value!r}"[:120]) from None
    if not all(math.isfinite(v) for v in out):
        raise _Invalid("values must be finite")
    return out


def _channels(values: list[float], what: str) -> tuple[float, ...]:
    if len(values) == 1:
        values = values * 3  # one value for all channels, as torchvision's Normalize allows
    if len(values) != 3:
        raise _Invalid(f"{what} needs 3 values (R, G, B), got {len(values)}")
    return tuple(values)


def _normalisation(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...], str | None]:
    m = _channels(_numbers(mean), "mean")
    s = _channels(_numbers(std), "std")
    if any(v <= 0 for v in s):
        raise _Invalid(f"std values must be positive, got {list(s)}")
    if max(m + s) > 1.0:  # 0-255 units: pixels here are in [0, 1]
        note = (f"mean/std {list(m)}/{list(s)} are in 0-255 units (a value above 1): divided by "
                "255 for pixels in [0, 1]")
        return tuple(v / 255.0 for v in m), tuple(v / 255.0 for v in s), note
    return m, s, None


def _size(value: Any) -> tuple[int, str | None]:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        sides = [int(v) for v in _numbers(value)]
        if len(sides) == 3 and sides[0] in (1, 3):
            sides = sides[1:]  # (C, H, W), as timm's pretrained_cfg writes it
        if len(sides) == 1:
            sides = sides * 2
        if len(sides) != 2:
            raise _Invalid(f"expected a side, [H, W] or [C, H, W], got {value!r}"[:120])
        if sides[0] != sides[1]:
            return max(sides), f"input size {sides} is not square: using {max(sides)}"
        value = sides[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 8:
        raise _Invalid(f"expected an input side of at least 8 pixels, got {value!r}"[:120])
    return int(value), None


def _names(value: Any, strict: bool) -> list[str]:
    """Class names from a list (in output order) or an index <-> name mapping."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes, Mapping)):
        value = value.tolist()
    if isinstance(value, Mapping):
        items = list(value.items())
        if items and all(isinstance(v, str) for _, v in items):  # idx_to_class / id2label
            pairs = [(_index(k), v) for k, v in items]
        elif items and all(_is_index(v) for _, v in items):  # class_to_idx / label2id
            pairs = [(_index(v), str(k)) for k, v in items]
        else:
            raise _Invalid("expected a mapping between class indices and names")
        pairs.sort()
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise _Invalid(f"class indices must be 0 to {len(pairs) - 1}, got "
                           f"{[i for i, _ in pairs]}"[:120])
        names = [n for _, n in pairs]
    elif isinstance(value, (list, tuple)):
        if strict:
            names = [str(v) for v in value]
        elif all(isinstance(v, str) for v in value):
            names = list(value)
        else:  # e.g. labels = [0, 1, 2, 3, 4]: numbers, not names
            raise _Skip("expected a list of class names (strings)")
    else:
        raise _Skip(f"expected a list of class names, got {type(value).__name__}")
    if len(names) < 1 or len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise _Invalid(f"class names must be non-empty and distinct, got {names}"[:160])
    return names


def _is_index(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, str) and v.strip().isdigit())


def _index(v: Any) -> int:
    if not _is_index(v):
        raise _Invalid(f"{v!r} is not a class index")
    return int(v)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Skip("not a number of classes")
    if value < 1:
        raise _Invalid(f"expected a positive number of classes, got {value!r}")
    return value


# ------------------------------------------------------------------------------- constructors
def from_arguments(class_names: Sequence[str] | None = None, mean: Any = None, std: Any = None,
                   input_size: int | None = None, target: Any = None,
                   kwargs: Mapping[str, Any] | None = None) -> ModelMetadata:
    """Metadata given by the caller (the CLI's flags); a bad value raises ModelArgumentError."""
    meta = ModelMetadata(kwargs=dict(kwargs or {}))
    src = "argument"
    if meta.kwargs:
        meta.sources["kwargs"] = src
    try:
        if class_names:
            meta.class_names = _names(list(class_names), strict=True)
            meta.sources["class_names"] = src
        if mean is not None:
            meta.mean = _channels(_numbers(mean), "mean")
            meta.sources["mean"] = src
        if std is not None:
            meta.std = _channels(_numbers(std), "std")
            if any(v <= 0 for v in meta.std):
                raise _Invalid(f"std values must be positive, got {list(meta.std)}")
            meta.sources["std"] = src
        if meta.mean is not None and meta.std is not None:
            meta.mean, meta.std, note = _normalisation(meta.mean, meta.std)
            if note:
                meta.notes.append(note)
        if input_size is not None:
            meta.input_size, note = _size(input_size)
            meta.sources["input_size"] = src
        if target is not None:
            meta.target = target
            meta.sources["target"] = src
    except _Invalid as exc:
        raise ModelArgumentError(f"model argument: {exc}") from None
    return meta


def sidecar_path(*files: Path | None) -> Path | None:
    """The first of ``<file>.json`` (suffix replaced) or ``<file>.<ext>.json`` that exists."""
    for f in files:
        if f is None:
            continue
        for cand in (f.with_suffix(".json"), f.with_name(f.name + ".json")):
            if cand != f and cand.is_file():
                return cand
    return None


def from_json(path: Path) -> ModelMetadata:
    """Metadata from a JSON file (medig's own format: any value that does not fit is an error)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read model metadata JSON ({exc})"
                             .splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: model metadata must be a JSON object")
    meta = _extract(data, f"JSON {path.name}", strict=True, where=str(path))
    kwargs = data.get("kwargs", data.get("model_args"))
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise ModelLoadError(f"{path}: 'kwargs' must be an object of constructor arguments")
        meta.kwargs = dict(kwargs)
        meta.sources["kwargs"] = f"JSON {path.name}"
    return meta


def from_checkpoint(content: Mapping[str, Any], label: str = "checkpoint") -> ModelMetadata:
    """Metadata found in a checkpoint's dict (nested up to a few levels), read liberally."""
    return _extract(content, label, strict=False, where=label)


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    """A mapping to search inside ``value``: a dict, or the recorded state of an object that was
    not unpickled (a pickled ``transforms.Normalize`` keeps its mean and std there)."""
    if isinstance(value, Opaque):
        value = value.state
    if (isinstance(value, Mapping) and value
            and not all(isinstance(v, torch.Tensor) for v in value.values())):
        return value
    return None


def _walk(content: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The mappings to search, shallow first: (dotted key path, mapping). Lists are walked too
    (a serialised ``Compose`` keeps its ``Normalize`` in a list of transforms)."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    level: list[tuple[str, Mapping[str, Any]]] = [("", content)]
    seen: set[int] = set()
    for _ in range(_MAX_DEPTH + 1):
        nxt = []
        for path, mapping in level:
            if id(mapping) in seen:
                continue
            seen.add(id(mapping))
            found.append((path, mapping))
            for key, value in mapping.items():
                if not isinstance(key, str) or key.lower() in _SKIP_KEYS:
                    continue
                items = (list(enumerate(value)) if isinstance(value, (list, tuple))
                         else [(None, value)])
                for index, item in items[:64]:
                    child = _as_mapping(item)
                    if child is not None:
                        where = f"{key}[{index}]" if index is not None else key
                        nxt.append((f"{path}{where}.", child))
        level = nxt
    return found


def _extract(content: Mapping[str, Any], label: str, strict: bool, where: str) -> ModelMetadata:
    meta = ModelMetadata()
    mappings = _walk(content)

    def fail(key: str, exc: Exception) -> None:
        if isinstance(exc, _Skip):
            return
        if strict:
            raise ModelLoadError(f"{where}: '{key}': {exc}") from None
        meta.notes.append(f"{label}: ignored '{key}' ({exc})")

    def first(keys: Sequence[str], parse: Any, piece: str, top_only: bool = False) -> None:
        for path, mapping in mappings:
            if top_only and path:
                break
            for key in keys:
                if key not in mapping or mapping[key] is None:
                    continue
                try:
                    value = parse(mapping[key])
                except _Invalid as exc:
                    fail(path + key, exc)
                    continue
                setattr(meta, piece, value)
                meta.sources[piece] = f"{label} {path}{key}"
                return

    first(_NAME_KEYS, lambda v: _names(v, strict), "class_names")
    first(_COUNT_KEYS, _count, "num_classes")

    def size(value: Any) -> int:
        side, note = _size(value)
        if note:
            meta.notes.append(f"{label}: {note}")
        return side

    first(_SIZE_KEYS, size, "input_size")
    first(_TARGET_KEYS, lambda v: v, "target")
    if "target" in content and "target" not in meta.sources and content["target"] is not None:
        meta.target = content["target"]
        meta.sources["target"] = f"{label} target"
    _extract_normalisation(meta, mappings, label, strict, fail)
    return meta


def _extract_normalisation(meta: ModelMetadata, mappings: list[tuple[str, Mapping[str, Any]]],
                           label: str, strict: bool, fail: Any) -> None:
    # mean and std are taken together, from the shallowest mapping holding both: pairing a mean
    # from one place with a std from another would normalise with statistics nobody trained on.
    lone: str | None = None
    for path, mapping in mappings:
        mean_key = next((k for k in _MEAN_KEYS if mapping.get(k) is not None), None)
        std_key = next((k for k in _STD_KEYS if mapping.get(k) is not None), None)
        if mean_key and std_key:
            try:
                meta.mean, meta.std, note = _normalisation(mapping[mean_key], mapping[std_key])
            except _Invalid as exc:
                fail(f"{path}{mean_key}/{std_key}", exc)
                continue
            meta.sources["mean"] = f"{label} {path}{mean_key}"
            meta.sources["std"] = f"{label} {path}{std_key}"
            if note:
                meta.notes.append(f"{label}: {note}")
            return
        if (mean_key or std_key) and lone is None:
            lone = f"{path}{mean_key or std_key}"
    if lone is not None:
        if strict:
            raise ModelLoadError(f"{label}: model metadata has only one of mean/std ({lone})")
        meta.notes.append(f"{label}: ignored '{lone}' (no matching mean/std beside it)")


# ------------------------------------------------------------------------------------ merging
def merge_metadata(*layers: ModelMetadata) -> ModelMetadata:
    """One metadata from several, earlier layers first (arguments, JSON, checkpoint, architecture).

    Each piece comes from the first layer that has it; mean and std may come from different
    layers only when given separately as arguments (``--mean`` with a checkpoint's std).
    Constructor ``kwargs`` are merged key by key, earlier layers winning.
    """
    out = ModelMetadata()
    for piece in _PIECES:
        for layer in layers:
            value = getattr(layer, piece)
            if value is not None:
                setattr(out, piece, value)
                out.sources[piece] = layer.sources.get(piece, "?")
                break
    for layer in reversed(layers):
        out.kwargs.update(layer.kwargs)
        if layer.kwargs and "kwargs" in layer.sources:
            out.sources["kwargs"] = layer.sources["kwargs"]
    for layer in layers:
        out.notes.extend(n for n in layer.notes if n not in out.notes)
    if out.mean is not None and out.std is not None:
        try:
            out.mean, out.std, note = _normalisation(out.mean, out.std)
        except _Invalid as exc:  # pragma: no cover - each layer was checked
            raise ModelLoadError(f"normalisation: {exc}") from None
        if note and note not in out.notes:
            out.notes.append(note)
    elif (out.mean is None) != (out.std is None):
        have = "mean" if out.mean is not None else "std"
        raise ModelArgumentError(
            f"model metadata has only one of mean/std ({have} from {out.sources[have]}); "
            "give both (--mean R G B --std R G B)")
    return out
