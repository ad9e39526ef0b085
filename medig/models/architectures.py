# SPDX-License-Identifier: Apache-2.0
"""Build the architecture a state dict belongs to: torchvision, timm, MONAI or a user factory.

Nothing here downloads: torchvision models are built with ``weights=None`` and timm models with
``pretrained=False`` (and the Hugging Face hub set offline while they are built); the weights
always come from the user's file.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from medig.models.errors import ModelArgumentError, ModelLoadError

__all__ = ["ARCHITECTURE_PREFIXES", "build_architecture", "count_outputs",
           "guess_num_classes", "required_input_size", "skipped_init"]

#: Spec prefixes naming a library of architectures (anything else with a colon is a factory).
ARCHITECTURE_PREFIXES = ("torchvision", "timm", "monai")
#: Constructor arguments that would fetch pretrained weights from the network.
_DOWNLOADING = {"torchvision": ("weights", "weights_backbone"),
                "timm": ("pretrained", "pretrained_cfg_overlay", "pretrained_cfg")}


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Tell huggingface_hub (used by timm) not to touch the network. ``pretrained=False`` is
    what keeps timm from downloading; huggingface_hub reads these flags when first imported, so
    they are also set around timm's first import."""
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in old})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: ``torch.nn.init`` functions that fill parameters at construction.
_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                   "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """Build modules without random initialisation (as Hugging Face's ``no_init_weights``).

    Only for architectures whose every parameter is then overwritten by a checkpoint (the key fit
    checks this): drawing 28 M truncated-normal numbers that are thrown away took longer than
    reading the weights file (swin_t: 5.7 of 11 s on a loaded 2-core machine).
    """
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}

    def keep(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return tensor

    try:
        for name in saved:
            setattr(torch.nn.init, name, keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _unexpected_keyword(exc: TypeError, kwargs: Mapping[str, Any]) -> str | None:
    match = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    return match.group(1) if match and match.group(1) in kwargs else None


def build_architecture(spec: str, num_classes: int | None,
                       kwargs: Mapping[str, Any] | None = None,
                       initialise: bool = True) -> nn.Module:
    """The untrained model named by ``spec`` with ``num_classes`` outputs.

    Parameters
    ----------
    spec : str
        ``"torchvision:<arch>"`` (``torchvision.models.get_model``), ``"timm:<arch>"``
        (``timm.create_model``, needs ``pip install "medig[timm]"``), ``"monai:<network>"`` (2-D,
        3 input channels) or ``"package.module:factory"`` (``factory(**kwargs)``; ``num_classes``
        is not passed: the factory decides).
    num_classes : int or None
        Outputs of the classifier head (None: the library's default).
    kwargs : mapping, optional
        Constructor arguments (``image_size=64`` for a torchvision ViT, ``img_size=64``,
        ``drop_rate=0.2`` for timm, ...).
    initialise : bool
        False skips the random initialisation of library architectures (see
        :func:`skipped_init`); only when a checkpoint will overwrite every parameter.

    Raises
    ------
    ModelArgumentError
        A keyword argument the constructor does not take, or one that would download weights.
    ModelLoadError
        Unknown architecture, missing library, or a factory that does not return an nn.Module.
    """
    prefix, _, name = spec.partition(":")
    kwargs = dict(kwargs or {})
    for key in _DOWNLOADING.get(prefix, ()):
        if kwargs.get(key):
            raise ModelArgumentError(f"{spec}: model argument {key}={kwargs[key]!r} would download "
                                     "weights; medig never downloads: pass the weights file")
        kwargs.pop(key, None)
    if "num_classes" in kwargs:  # given as a model argument: it decides the head
        num_classes = kwargs.pop("num_classes")
    heads = {} if num_classes is None else {"num_classes": num_classes}
    library = prefix in ARCHITECTURE_PREFIXES
    try:
        with skipped_init() if library and not initialise else contextlib.nullcontext():
            model = _construct(spec, prefix, name, heads, kwargs)
    except TypeError as exc:
        keyword = _unexpected_keyword(exc, kwargs)
        if keyword is not None:
            raise ModelArgumentError(f"{spec}: model argument {keyword!r} is not accepted "
                                     f"({exc})".splitlines()[0][:300]) from None
        raise ModelLoadError(f"{spec}: cannot build the model (TypeError: {exc})"
                             .splitlines()[0][:300]) from None
    except (ImportError, AttributeError, ValueError, KeyError, RuntimeError,
            AssertionError) as exc:
        raise ModelLoadError(f"{spec}: cannot build the model ({type(exc).__name__}: {exc})"
                             .splitlines()[0][:300]) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec}: factory returned {type(model).__name__}, not an nn.Module")
    return model


def _construct(spec: str, prefix: str, name: str, heads: dict[str, Any],
               kwargs: dict[str, Any]) -> Any:
    if prefix == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, **heads, **kwargs)
    if prefix == "timm":
        return _build_timm(spec, name, heads, kwargs)
    if prefix == "monai":
        # Imported here only: medig's core never needs MONAI.
        from monai.networks import nets

        params = {"spatial_dims": 2, "in_channels": 3, **kwargs}
        if "num_classes" in heads:
            params.setdefault("out_channels", heads["num_classes"])
        return getattr(nets, name)(**params)
    factory: Any = importlib.import_module(prefix)
    for part in name.split("."):
        factory = getattr(factory, part)
    return factory(**kwargs)


def _build_timm(spec: str, name: str, heads: dict[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    try:
        with _offline():
            import timm
    except ImportError:
        raise ModelLoadError(f"{spec}: timm is not installed; "
                             "pip install \"medig[timm]\"") from None
    if ":" in name or name.startswith(("hf-hub", "hf_hub", "local-dir")):
        raise ModelLoadError(f"{spec}: hub and local-dir model names fetch configurations; use "
                             "an architecture name (e.g. timm:efficientnet_b0) and --weights")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0]}*")[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelLoadError(f"{spec}: timm has no architecture {name!r}{hint}")
    with _offline():
        return timm.create_model(name, pretrained=False, **heads, **kwargs)


def guess_num_classes(state: Mapping[str, Tensor]) -> int | None:
    """Outputs of the classifier head, read off a state dict: the first dimension of its last
    matrix-shaped weight (``fc.weight``, ``head.weight``, ``classifier.1.weight``, ...).

    Only a first guess for building the architecture before its keys are fitted: the fit then
    checks every shape, and a wrong guess fails there with both shapes named.
    """
    for key in reversed(list(state)):
        value = state[key]
        if key.endswith("weight") and isinstance(value, Tensor) and value.ndim >= 2:
            return int(value.shape[0])
    return None


def required_input_size(model: nn.Module) -> int | None:
    """The input side an architecture only works at (vision transformers with a fixed patch
    grid), or None when any reasonable size works (CNNs, Swin in torchvision)."""
    size = getattr(model, "image_size", None)  # torchvision VisionTransformer
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    embed = getattr(model, "patch_embed", None)  # timm ViT, DeiT, Swin, ...
    if (embed is not None and getattr(embed, "strict_img_size", False)
            and not getattr(model, "dynamic_img_size", False)):
        side = getattr(embed, "img_size", None)
        if isinstance(side, (tuple, list)) and len(side) == 2 and side[0] == side[1]:
            return int(side[0])
        if isinstance(side, int):
            return side
    return None


def count_outputs(model: nn.Module, side: int | None) -> int:
    """Number of outputs, from one forward pass on a black image (for models built elsewhere)."""
    x = torch.zeros(1, 3, side or 224, side or 224)
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - any failure means we cannot tell
        raise ModelLoadError(f"cannot count the model's outputs with a test input of "
                             f"{side or 224} px ({type(exc).__name__}: {exc}); give the class "
                             "names or the input size".splitlines()[0][:300]) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise ModelLoadError(f"the model returns {type(out).__name__} of shape "
                             f"{tuple(getattr(out, 'shape', ()))}; medig needs (N, classes) logits")
    return int(out.shape[1])
