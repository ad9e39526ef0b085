# SPDX-License-Identifier: Apache-2.0
"""One entry point for the models medig audits: the demo model and users' own classifiers.

Accepted ``spec`` forms (see :func:`load_model`):

- ``"demo"``: the shipped demo model (:class:`medig.models.DemoNet`, synthetic data);
  ``"demo-shortcut"``: a known answer that reads only a stamp in the frame's corner, outside the
  retina (``bench/shortcut.py``), to see what the audit reports on a shortcut.
- a ``torch.export`` program file (``.pt2``), loaded with :func:`torch.export.load`;
- a TorchScript file (``torch.jit.save``), loaded with :func:`torch.jit.load`;
- ``"torchvision:<arch>"``, ``"timm:<arch>"`` or ``"monai:<network>"`` plus a weights file;
- ``"package.module:factory"``: ``factory(**kwargs)`` returns an ``nn.Module``; weights optional.

Weights files may be ``.safetensors`` or anything ``torch.save`` wrote: a state dict or a training
checkpoint (Lightning ``.ckpt``, ``{"model_state_dict": ...}``, ``{"model": ...}``), with wrapper
prefixes stripped where that makes the keys fit (:mod:`medig.models.checkpoint`). They are only
ever read with ``torch.load(..., weights_only=True)``: a pickled module can run arbitrary code on
load, and an audit must be safe to run on files received from elsewhere. Class names,
normalisation, input size and a default target come from arguments, a JSON file beside the
weights, or the checkpoint itself (:mod:`medig.models.metadata`); the loaded model records where.
This module only orchestrates: reading is in :mod:`~medig.models.checkpoint`, building in
:mod:`~medig.models.architectures`.
"""
from __future__ import annotations

import logging
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medig.attr.class_group import ClassGroup
from medig.attr.target_syntax import parse_target
from medig.models.architectures import (
    ARCHITECTURE_PREFIXES,
    build_architecture,
    count_outputs,
    guess_num_classes,
    required_input_size,
)
from medig.models.checkpoint import (
    Checkpoint,
    FittedWeights,
    fit_state_dict,
    head_outputs,
    read_checkpoint,
)
from medig.models.errors import ModelArgumentError, ModelLoadError
from medig.models.metadata import (
    ModelMetadata,
    from_arguments,
    from_checkpoint,
    from_json,
    merge_metadata,
    sidecar_path,
)
from medig.utils import sha256_file

__all__ = ["DEMO_WEIGHTS", "SHORTCUT_WEIGHTS", "LoadedModel", "ModelArgumentError", "ModelLoadError",
           "load_model"]

logger = logging.getLogger("medig")

#: The shipped demo weights; ``demo.json`` beside them holds class names, input size, mean/std.
DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo.pt"
#: The shipped shortcut model (``bench/shortcut.py``), with ``demo-shortcut.json`` beside it.
SHORTCUT_WEIGHTS = DEMO_WEIGHTS.with_name("demo-shortcut.pt")
_DEMOS = {"demo": DEMO_WEIGHTS, "demo-shortcut": SHORTCUT_WEIGHTS}


class LoadedModel(tuple):
    """``(model, class_names)`` with the loading details as attributes.

    A tuple so that ``model, classes = medig.load_model("demo")`` works.

    Attributes
    ----------
    model : nn.Module
        The classifier in eval mode, taking pixel-space RGB in [0, 1] (normalisation folded in
        when mean/std are known).
    class_names : list of str
        One name per output logit, in output order (``"class 0"``, ... when none were found).
    input_size : int or None
        Side of the square input the model was trained on, if known.
    spec : str
        The spec it was loaded from.
    weights_sha256 : str or None
        SHA-256 of the weights (or model) file; None when the model has no file.
    metadata : ModelMetadata or None
        Everything found about the model, with ``metadata.sources`` saying where each piece came
        from (argument, JSON file, checkpoint key, architecture) and ``metadata.notes``.
    default_target : int, ClassGroup or None
        The class or group the model declares as the one to explain (e.g. a ``positive_class``
        of ``"referable DR"``), resolved to indices; None when it declares none.
    details : dict
        How the weights were read: format, location inside the file, prefix stripped, keys
        ignored, objects not unpickled.
    """

    model: nn.Module
    class_names: list[str]
    input_size: int | None
    spec: str
    weights_sha256: str | None
    metadata: ModelMetadata | None
    default_target: int | ClassGroup | None
    details: dict[str, Any]

    def __new__(  # noqa: PYI034 - a tuple subclass; Self needs Python 3.11
        cls, model: nn.Module, class_names: Sequence[str], input_size: int | None = None,
        spec: str = "", weights_sha256: str | None = None, metadata: ModelMetadata | None = None,
        default_target: int | ClassGroup | None = None, details: dict[str, Any] | None = None,
    ) -> LoadedModel:
        names = [str(c) for c in class_names]
        self = super().__new__(cls, (model, names))
        self.model = model
        self.class_names = names
        self.input_size = input_size
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.metadata = metadata
        self.default_target = default_target
        self.details = dict(details or {})
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # keeps copy/pickle of the tuple subclass working
        return (self.model, self.class_names, self.input_size, self.spec, self.weights_sha256,
                self.metadata, self.default_target, self.details)

    def __repr__(self) -> str:
        return (f"LoadedModel(spec={self.spec!r}, class_names={self.class_names!r}, "
                f"input_size={self.input_size!r}, weights_sha256={self.weights_sha256!r})")

    def provenance(self) -> dict[str, Any]:
        """A JSON-ready record of what was loaded and where each piece came from."""
        meta = self.metadata or ModelMetadata()
        values = {"class_names": self.class_names, "input_size": self.input_size,
                  "mean": list(meta.mean) if meta.mean else None,
                  "std": list(meta.std) if meta.std else None, "kwargs": meta.kwargs or None}
        pieces = {k: {"value": v, "source": meta.sources.get(k)} for k, v in values.items()
                  if v is not None}
        return {"pieces": pieces, "notes": list(meta.notes), **self.details}


class _Frozen(nn.Module):
    """Holds an exported graph module whose ``train()``/``eval()`` raise NotImplementedError.

    A ``torch.export`` program keeps the mode it was exported in (export in eval mode); this shim
    lets the usual ``model.eval()`` calls, and :func:`medig.with_normalization`, pass over it.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> _Frozen:
        self.training = mode
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def _archive_kind(path: Path) -> str:
    """'export', 'torchscript' or 'pickle' (anything torch.save wrote), from the zip layout."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return "pickle"  # legacy (non-zip) torch.save files
    if any(n.endswith("/archive_format") for n in names):
        return "export"
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    return "pickle"


def _generic_names(count: int, spec: str, meta: ModelMetadata) -> list[str]:
    names = [f"class {i}" for i in range(count)]
    note = (f"{spec}: no class names found (arguments, JSON file or checkpoint); using "
            f"'class 0' to 'class {count - 1}'")
    logger.warning(note)
    meta.notes.append(note)
    meta.sources["class_names"] = "generic (none given)"
    return names


def _declared_target(meta: ModelMetadata, names: list[str], spec: str) -> int | ClassGroup | None:
    """The default target the metadata declares, resolved; a checkpoint's unusable value is
    skipped with a warning (it may mean something else there), a JSON file's or argument's is
    an error."""
    raw, source = meta.target, meta.sources.get("target", "")
    if raw is None:
        return None
    try:
        if isinstance(raw, Mapping):
            if "name" in raw and ("classes" in raw or "members" in raw):
                return ClassGroup(str(raw["name"]), list(raw.get("classes", raw.get("members"))))\
                    .resolve(names)
            if len(raw) == 1:
                (name, members), = raw.items()
                return ClassGroup(str(name), list(members)).resolve(names)
            raise ValueError("a group is {'name': ..., 'classes': [...]}")
        if isinstance(raw, (list, tuple)):
            group = ClassGroup("positive", list(raw)).resolve(names)
            return group.indices[0] if len(group.indices) == 1 else group
        return parse_target(raw if isinstance(raw, (int, str)) else str(raw), names)
    except (ValueError, TypeError) as exc:
        if source.startswith("checkpoint"):
            note = f"{source}: declared target {raw!r} ignored ({exc})"
            logger.warning(note)
            meta.notes.append(note)
            meta.target = None
            meta.sources.pop("target", None)
            return None
        raise ModelArgumentError(f"{spec}: declared target {raw!r} ({source}): {exc}") from None


def _spec_kind(spec: str) -> str:
    if spec in _DEMOS:
        return "demo"
    if Path(spec).is_file():  # before parsing "a:b": Windows paths contain colons
        return "file"
    if ":" in spec and not spec.endswith((".pt2", ".pt", ".pth", ".ts", ".ckpt", ".safetensors")):
        prefix = spec.partition(":")[0]
        return "architecture" if prefix in ARCHITECTURE_PREFIXES else "factory"
    raise ModelLoadError(
        f"{spec}: no such model file or spec; expected 'demo', a .pt2 (torch.export) or "
        "TorchScript file, 'torchvision:<arch>', 'timm:<arch>', 'monai:<network>' or "
        "'package.module:factory'")


def _load_program(model_file: Path) -> nn.Module:
    """A torch.export or TorchScript file; a torch.save file is refused with what it needs."""
    kind = _archive_kind(model_file)
    if kind == "export":
        try:
            return _Frozen(torch.export.load(model_file).module())
        except Exception as exc:  # noqa: BLE001 - any failure is a load failure here
            raise ModelLoadError(f"{model_file}: cannot load torch.export program "
                                 f"({type(exc).__name__})") from None
    if kind == "torchscript":
        with warnings.catch_warnings():
            # TorchScript is deprecated (torch 2.14) but widespread: load it without noise.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            try:
                return torch.jit.load(str(model_file), map_location="cpu")
            except RuntimeError as exc:
                raise ModelLoadError(f"{model_file}: cannot load TorchScript "
                                     f"({str(exc).splitlines()[0][:200]})") from None
    # A torch.save or safetensors file: refuse pickles, and explain what bare weights need.
    read_checkpoint(model_file)
    raise ModelLoadError(
        f"{model_file} is a state dict without an architecture; use spec "
        "'torchvision:<arch>', 'timm:<arch>', 'monai:<network>' or 'package.module:factory' "
        f"with weights='{model_file}'")


def _apply_weights(model: nn.Module, checkpoint: Checkpoint, spec: str,
                   names: list[str] | None, meta: ModelMetadata) -> FittedWeights:
    try:
        fitted = fit_state_dict(checkpoint.state_dict, model.state_dict(), checkpoint.path, spec)
    except ModelLoadError as error:
        heads = head_outputs(checkpoint.state_dict, model.state_dict()) if names else None
        if heads is not None and names and heads != len(names):  # say why the head does not fit
            raise ModelLoadError(f"{error}; the weights have {heads} outputs but "
                                 f"{len(names)} class names were given "
                                 f"({meta.sources.get('class_names')})") from None
        raise
    # Every architecture key was checked (names and shapes); only BatchNorm counters may be
    # absent, which strict loading would refuse.
    model.load_state_dict(fitted.state_dict, strict=False)
    return fitted


def load_model(
    spec: str | os.PathLike = "demo",
    weights: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | None = None,
    map_location: str | torch.device = "cpu",
    model_kwargs: Mapping[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    target: str | int | ClassGroup | None = None,
) -> LoadedModel:
    """Load a classifier for auditing, with its class names and normalisation folded in.

    Parameters
    ----------
    spec : str or path-like
        ``"demo"`` or ``"demo-shortcut"``; a ``torch.export`` ``.pt2`` file; a TorchScript file; ``"torchvision:<arch>"``
        (built with ``weights=None``); ``"timm:<arch>"`` (``pretrained=False``; needs
        ``pip install "medig[timm]"``); ``"monai:<network>"`` (``spatial_dims=2,
        in_channels=3``); or ``"package.module:factory"`` (``factory(**model_kwargs)``). The
        library forms get ``num_classes`` from the class names, a ``num_classes`` entry in the
        metadata, or the head of the weights.
    weights : str or path-like, optional
        Weights for the library and factory forms (required for the library forms: medig never
        downloads): a ``.safetensors`` file or a ``torch.save`` file holding a state dict or a
        training checkpoint (Lightning ``.ckpt``; ``state_dict``, ``model_state_dict`` or
        ``model`` entries). A key prefix (``model.``, ``net.``, ``module.``, ...) is stripped only
        when that makes the keys fit the architecture.
    class_names : sequence of str, optional
        Output names in logit order. Default: the JSON file beside the weights or model
        (``<file>.json`` or ``<file>.<ext>.json``), else the checkpoint (``classes``,
        ``class_names``, ``labels``, ``idx_to_class``, ...), else ``"class 0"``, ... with a
        warning.
    input_size : int, optional
        Side of the square model input; default: JSON, checkpoint (``image_size``,
        ``input_size``, ``img_size``), or the size a vision transformer was built for.
    map_location : str or torch.device
        Device to load onto.
    model_kwargs : mapping, optional
        Constructor arguments for the architecture or factory (override the JSON's ``kwargs``).
    mean, std : sequence of 3 floats, optional
        Normalisation the model was trained with (values above 1 mean 0-255 units and are divided
        by 255); default: JSON, then checkpoint (also nested under ``hyper_parameters``,
        ``preprocessing``, ``normalization``, ``transforms``, ...).
    target : str, int or ClassGroup, optional
        The class or group the model's audits explain by default (overrides a declared
        ``positive_class``/``target`` in the JSON or checkpoint).

    Returns
    -------
    LoadedModel
        ``(model, class_names)`` plus ``.input_size``, ``.spec``, ``.weights_sha256``,
        ``.metadata`` (with sources), ``.default_target`` and ``.details``. The model is in eval
        mode and takes pixel-space RGB in [0, 1], with mean/std folded in by
        :func:`medig.with_normalization` when known.

    Raises
    ------
    ModelArgumentError
        A bad argument: a constructor keyword the architecture does not take, a declared target
        naming an unknown class, malformed mean/std/size.
    ModelLoadError
        Unknown spec, missing file, weights that no key prefix fits to the architecture, or a
        pickled object where weights were expected (never unpickled).

    Examples
    --------
    >>> model, classes = load_model("demo")  # doctest: +SKIP
    >>> load_model("timm:efficientnet_b0", weights="dr.ckpt")  # Lightning checkpoint
    ...  # doctest: +SKIP
    """
    spec_str = os.fspath(spec)
    weights_path = Path(weights) if weights is not None else None
    if weights_path is not None and not weights_path.is_file():
        raise ModelLoadError(f"{weights_path}: weights file not found")
    kind = _spec_kind(spec_str)
    if kind == "demo":
        weights_path = weights_path or _DEMOS[spec_str]
        if not weights_path.is_file():
            raise ModelLoadError(f"{weights_path}: demo weights missing; run "
                                 "examples/train_demo_model.py")
    model_file = Path(spec_str) if kind == "file" else None
    if kind == "architecture" and weights_path is None:
        raise ModelLoadError(f"{spec_str}: weights=... (a state dict) is required; "
                             "medig never downloads weights")

    given = from_arguments(class_names, mean, std, input_size,
                           target.spec() if isinstance(target, ClassGroup) else target,
                           model_kwargs)
    sidecar = sidecar_path(weights_path, model_file)
    layers = [given] + ([from_json(sidecar)] if sidecar is not None else [])
    checkpoint = None
    if weights_path is not None:
        checkpoint = read_checkpoint(weights_path)
        label = ("safetensors metadata" if checkpoint.format == "safetensors"
                 else f"checkpoint {weights_path.name}")
        layers.append(from_checkpoint(checkpoint.content, label))
    meta = merge_metadata(*layers)
    names = meta.class_names
    details: dict[str, Any] = {}

    if kind == "demo":
        from medig.models.demo import DemoNet

        try:
            model: nn.Module = DemoNet(num_classes=len(names or ()) or 2, **meta.kwargs)
        except TypeError as exc:
            raise ModelArgumentError(f"demo: model arguments not accepted ({exc})") from None
    elif kind == "file":
        if given.kwargs:
            raise ModelArgumentError(f"{spec_str}: model arguments ({', '.join(given.kwargs)}) "
                                     "do not apply to a torch.export or TorchScript file")
        assert model_file is not None  # the spec is the file
        model = _load_program(model_file)
    else:
        count = len(names) if names else meta.num_classes
        num_classes = meta.kwargs.get("num_classes")
        if (kind == "architecture" and num_classes is not None and names
                and num_classes != len(names)):
            raise ModelArgumentError(f"{spec_str}: model argument num_classes={num_classes} but "
                                     f"{len(names)} class names ({meta.sources['class_names']})")
        probe = None
        if count is None and kind == "architecture":
            assert checkpoint is not None  # an architecture needs weights (refused above)
            probe, count = _probe_head(spec_str, meta.kwargs, checkpoint)
        model = probe if probe is not None else build_architecture(
            spec_str, count if kind == "architecture" else None, meta.kwargs,
            initialise=checkpoint is None)
    if checkpoint is not None:
        fitted = _apply_weights(model, checkpoint, spec_str, names, meta)
        details.update(weights_format=checkpoint.format,
                       weights_location=checkpoint.location or None,
                       prefix_stripped=fitted.prefix or None,
                       keys_ignored=len(fitted.ignored) or None,
                       not_unpickled=checkpoint.stood_in or None)
        details = {k: v for k, v in details.items() if v is not None}

    fixed = required_input_size(model)
    if fixed is not None:
        if meta.input_size is not None and meta.input_size != fixed:
            raise ModelArgumentError(
                f"{spec_str}: input size {meta.input_size} ({meta.sources.get('input_size')}) "
                f"does not match the {fixed} px the architecture was built for; set it with a "
                "model argument (image_size=... for torchvision ViT, img_size=... for timm)")
        meta.input_size = fixed
        meta.sources.setdefault("input_size", "architecture")
    if not names:
        outputs = (count_outputs(model, meta.input_size) if kind in ("file", "factory")
                   else _head_size(model, meta))
        names = _generic_names(outputs, spec_str, meta)
    default_target = _declared_target(meta, names, spec_str)
    for note in meta.notes:
        if "0-255 units" in note:
            logger.warning(note)

    hashed = weights_path if weights_path is not None else model_file
    sha = sha256_file(hashed) if hashed is not None else None
    if meta.mean is not None and meta.std is not None:
        from medig.attr import with_normalization

        model = with_normalization(model, meta.mean, meta.std)
    model = model.to(map_location).eval()
    return LoadedModel(model, names, meta.input_size, spec_str, sha, meta, default_target, details)


def _probe_head(spec: str, kwargs: Mapping[str, Any],
                checkpoint: Checkpoint) -> tuple[nn.Module | None, int | None]:
    """Without class names or a class count: the head size the weights have. The architecture
    is built with its library's default head and compared with the file (key order, which
    safetensors does not keep, plays no part); a model whose head already fits is returned."""
    try:
        probe = build_architecture(spec, None, kwargs, initialise=False)
    except ModelArgumentError:
        raise
    except ModelLoadError:  # e.g. MONAI networks have no default head size
        return None, guess_num_classes(checkpoint.state_dict)
    count = head_outputs(checkpoint.state_dict, probe.state_dict())
    if count is None:
        return probe, None  # the default head fits, or the fit will say what does not
    return None, count


def _head_size(model: nn.Module, meta: ModelMetadata) -> int:
    """Outputs of a model medig built: its last matrix-shaped weight, else one forward pass."""
    count = guess_num_classes(model.state_dict())
    return count if count is not None else count_outputs(model, meta.input_size)
