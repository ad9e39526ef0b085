# SPDX-License-Identifier: Apache-2.0
"""One entry point for the models medig audits: the demo model and users' own classifiers.

Accepted ``spec`` forms (see :func:`load_model`):

- ``"demo"``: the shipped demo model (:class:`medig.models.DemoNet`, synthetic data).
- a ``torch.export`` program file (``.pt2``), loaded with :func:`torch.export.load`;
- a TorchScript file (``torch.jit.save``), loaded with :func:`torch.jit.load`;
- ``"torchvision:<arch>"`` or ``"monai:<network>"`` plus a state-dict ``weights`` file;
- ``"package.module:factory"``: ``factory(**kwargs)`` returns an ``nn.Module``; weights optional.

Weights are only ever read with ``torch.load(..., weights_only=True)``: a pickled module can run
arbitrary code on load, and an audit must be safe to run on files received from elsewhere.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medig.utils import sha256_file

__all__ = ["DEMO_WEIGHTS", "LoadedModel", "ModelLoadError", "load_model"]

#: The shipped demo weights; ``demo.json`` beside them holds class names, input size, mean/std.
DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo.pt"


class ModelLoadError(Exception):
    """A model spec or weights file that medig cannot (or will not) load; one-line message."""


class LoadedModel(tuple):
    """``(model, class_names)`` with the loading details as attributes.

    A tuple so that ``model, classes = medig.load_model("demo")`` works.

    Attributes
    ----------
    model : nn.Module
        The classifier in eval mode, taking pixel-space RGB in [0, 1] (normalisation folded in
        when mean/std are known).
    class_names : list of str
        One name per output logit, in output order.
    input_size : int or None
        Side of the square input the model was trained on, if known.
    spec : str
        The spec it was loaded from.
    weights_sha256 : str or None
        SHA-256 of the weights (or model) file; None when the model has no file.
    """

    model: nn.Module
    class_names: list[str]
    input_size: int | None
    spec: str
    weights_sha256: str | None

    def __new__(  # noqa: PYI034 - a tuple subclass; Self needs Python 3.11
        cls, model: nn.Module, class_names: Sequence[str], input_size: int | None = None,
        spec: str = "", weights_sha256: str | None = None,
    ) -> LoadedModel:
        names = [str(c) for c in class_names]
        self = super().__new__(cls, (model, names))
        self.model = model
        self.class_names = names
        self.input_size = input_size
        self.spec = spec
        self.weights_sha256 = weights_sha256
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # keeps copy/pickle of the tuple subclass working
        return (self.model, self.class_names, self.input_size, self.spec, self.weights_sha256)

    def __repr__(self) -> str:
        return (f"LoadedModel(spec={self.spec!r}, class_names={self.class_names!r}, "
                f"input_size={self.input_size!r}, weights_sha256={self.weights_sha256!r})")


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read model metadata JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: model metadata must be a JSON object")
    return data


def _sidecar(*files: Path | None) -> dict[str, Any]:
    """Metadata from the first of ``<file>.json`` (suffix replaced) or ``<file>.<ext>.json``."""
    for f in files:
        if f is None:
            continue
        for cand in (f.with_suffix(".json"), f.with_name(f.name + ".json")):
            if cand != f and cand.is_file():
                return _read_json(cand)
    return {}


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


def _load_state_dict(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"{path} is a pickled object, not a state dict; medig only loads weights_only files; "
            "save model.state_dict() or use torch.export") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read weights ({exc})".splitlines()[0]) from None
    # Training checkpoints often nest the weights; DataParallel prefixes every key with "module.".
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path}: expected a state dict (parameter name -> tensor)")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        missing = sorted(set(model.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(model.state_dict()))
        detail = (f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                  f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if not missing and not unexpected:
            detail = str(exc).splitlines()[-1].strip()[:200]  # shape mismatch
        raise ModelLoadError(f"{path}: weights do not fit the architecture ({detail})") from None


def _need_names(class_names: Sequence[str] | None, spec: str) -> list[str]:
    if not class_names:
        raise ModelLoadError(f"{spec}: class names unknown; pass class_names=[...] or put a JSON "
                             "file with 'class_names' beside the weights/model")
    return list(class_names)


def _build(spec: str, class_names: list[str], kwargs: Mapping[str, Any]) -> nn.Module:
    prefix, _, name = spec.partition(":")
    try:
        if prefix == "torchvision":
            import torchvision

            return torchvision.models.get_model(name, weights=None, num_classes=len(class_names),
                                                **kwargs)
        if prefix == "monai":
            # Imported here only: medig's core never needs MONAI.
            from monai.networks import nets

            factory = getattr(nets, name)
            params = {"spatial_dims": 2, "in_channels": 3, "out_channels": len(class_names),
                      **kwargs}
            return factory(**params)
        module = importlib.import_module(prefix)
        factory = module
        for part in name.split("."):
            factory = getattr(factory, part)
        model = factory(**kwargs)
    except (ImportError, AttributeError, ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{spec}: cannot build the model ({type(exc).__name__}: {exc})"
                             .splitlines()[0]) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec}: factory returned {type(model).__name__}, not an nn.Module")
    return model


def load_model(
    spec: str | os.PathLike = "demo",
    weights: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | None = None,
    map_location: str | torch.device = "cpu",
    model_kwargs: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Load a classifier for auditing, with its class names and normalisation folded in.

    Parameters
    ----------
    spec : str or path-like
        ``"demo"``; a ``torch.export`` ``.pt2`` file; a TorchScript file; ``"torchvision:<arch>"``
        (built with ``weights=None, num_classes=len(class_names)``); ``"monai:<network>"`` (built
        with ``spatial_dims=2, in_channels=3, out_channels=len(class_names)``); or
        ``"package.module:factory"`` (``factory(**model_kwargs)`` returns the module).
    weights : str or path-like, optional
        State-dict file (read with ``weights_only=True``) for the ``torchvision:``, ``monai:`` and
        factory forms; required for the first two. A ``{"state_dict": ...}`` checkpoint and a
        ``module.`` (DataParallel) key prefix are unwrapped.
    class_names : sequence of str, optional
        Output names in logit order. Defaults to ``class_names`` from the JSON metadata beside the
        weights or model file (``<file>.json`` with the suffix replaced, or ``<file>.<ext>.json``).
    input_size : int, optional
        Side of the square model input; defaults to the JSON's ``input_size``.
    map_location : str or torch.device
        Device to load onto.
    model_kwargs : mapping, optional
        Extra keyword arguments for the factory (overrides the JSON's ``kwargs``).

    Returns
    -------
    LoadedModel
        ``(model, class_names)`` plus ``.input_size``, ``.spec`` and ``.weights_sha256``. The model
        is in eval mode and takes pixel-space RGB in [0, 1]: when the JSON gives ``mean`` and
        ``std`` they are folded in with :func:`medig.with_normalization`.

    Raises
    ------
    ModelLoadError
        Unknown spec, missing file, missing class names, weights that do not fit, or a pickled
        object where a state dict was expected (never unpickled).

    Examples
    --------
    >>> model, classes = load_model("demo")  # doctest: +SKIP
    >>> load_model("torchvision:resnet18", weights="resnet.pt", class_names=["no DR", "DR"])
    ...  # doctest: +SKIP
    """
    spec_str = os.fspath(spec)
    weights_path = Path(weights) if weights is not None else None
    if weights_path is not None and not weights_path.is_file():
        raise ModelLoadError(f"{weights_path}: weights file not found")

    model_file: Path | None = None
    if spec_str == "demo":
        weights_path = weights_path or DEMO_WEIGHTS
        if not weights_path.is_file():
            raise ModelLoadError(f"{weights_path}: demo weights missing; run "
                                 "examples/train_demo_model.py")
        meta = _sidecar(weights_path)
    elif Path(spec_str).is_file():  # before parsing "a:b": Windows paths contain colons
        model_file = Path(spec_str)
        meta = _sidecar(weights_path, model_file)
    elif ":" in spec_str and not spec_str.endswith((".pt2", ".pt", ".pth", ".ts")):
        meta = _sidecar(weights_path)
    else:
        raise ModelLoadError(
            f"{spec_str}: no such model file or spec; expected 'demo', a .pt2 (torch.export) or "
            "TorchScript file, 'torchvision:<arch>', 'monai:<network>' or 'package.module:factory'")

    names = list(class_names) if class_names else meta.get("class_names")
    size = input_size if input_size is not None else meta.get("input_size")
    kwargs = dict(meta.get("kwargs") or {})
    kwargs.update(model_kwargs or {})
    sha: str | None = None

    if spec_str == "demo":
        from medig.models.demo import DemoNet

        names = _need_names(names, spec_str)
        model = DemoNet(num_classes=len(names), **kwargs)
        _apply_state_dict(model, _load_state_dict(weights_path, "cpu"), weights_path)
    elif model_file is not None:
        kind = _archive_kind(model_file)
        names = _need_names(names, spec_str)
        if kind == "export":
            try:
                model = _Frozen(torch.export.load(model_file).module())
            except Exception as exc:  # noqa: BLE001 - any failure is a load failure here
                raise ModelLoadError(f"{model_file}: cannot load torch.export program "
                                     f"({type(exc).__name__})") from None
        elif kind == "torchscript":
            with warnings.catch_warnings():
                # TorchScript is deprecated (torch 2.14) but widespread: load it without noise.
                warnings.simplefilter("ignore", category=DeprecationWarning)
                warnings.simplefilter("ignore", category=FutureWarning)
                try:
                    model = torch.jit.load(str(model_file), map_location="cpu")
                except RuntimeError as exc:
                    raise ModelLoadError(f"{model_file}: cannot load TorchScript "
                                         f"({str(exc).splitlines()[0][:200]})") from None
        else:
            # A torch.save file: refuse pickles, and explain what a bare state dict needs.
            _load_state_dict(model_file, "cpu")
            raise ModelLoadError(
                f"{model_file} is a state dict without an architecture; use spec "
                "'torchvision:<arch>', 'monai:<network>' or 'package.module:factory' with "
                f"weights='{model_file}'")
        sha = sha256_file(model_file)
    else:
        prefix = spec_str.partition(":")[0]
        if prefix in ("torchvision", "monai"):
            names = _need_names(names, spec_str)
            if weights_path is None:
                raise ModelLoadError(f"{spec_str}: weights=... (a state dict) is required; "
                                     "medig never downloads weights")
        model = _build(spec_str, names or [], kwargs)
        if weights_path is not None:
            _apply_state_dict(model, _load_state_dict(weights_path, "cpu"), weights_path)
        names = _need_names(names, spec_str)

    if weights_path is not None:
        sha = sha256_file(weights_path)
    mean, std = meta.get("mean"), meta.get("std")
    if mean is not None and std is not None:
        from medig.attr import with_normalization

        model = with_normalization(model, mean, std)
    elif (mean is None) != (std is None):
        raise ModelLoadError(f"{spec_str}: model metadata has only one of mean/std")
    model = model.to(map_location).eval()
    return LoadedModel(model, names, int(size) if size is not None else None, spec_str, sha)
