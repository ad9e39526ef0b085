# SPDX-License-Identifier: Apache-2.0
"""Integrated Gradients baselines for fundus photographs, in pixel space ([0, 1] RGB).

A baseline is the "absence of signal" that IG integrates from. Which absence matters: a black image
removes the whole retina, a blurred one removes fine structure (microaneurysms, exudates) but keeps
the disk, a featureless retina removes everything but the disk and its mean colour. See Sturmfels et
al., "Visualizing the Impact of Feature Attribution Baselines", Distill 2020.

Every built-in baseline is a function ``fn(inputs) -> baselines`` of an ``(N, C, H, W)`` batch in
``[0, 1]`` that returns a tensor of the same shape, dtype and device, also in ``[0, 1]``. Noise
baselines draw one pattern per image *shape* from a seeded generator and reuse it for every image,
so an image gets the same baseline whatever batch or process it is audited in.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BaselineFn",
    "BaselineSpec",
    "ReferenceSet",
    "available_baselines",
    "black",
    "blur",
    "fov_mean",
    "gaussian",
    "get_baseline",
    "make_baselines",
    "register_baseline",
    "uniform",
]

BaselineFn = Callable[[Tensor], Tensor]
BaselineSpec = Union[str, float, int, Tensor, BaselineFn, "ReferenceSet", Sequence]


def black(inputs: Tensor) -> Tensor:
    """All-zero image: a black photograph (not zero in the model's normalised space)."""
    return torch.zeros_like(inputs)


def _gaussian_kernel1d(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    radius = max(1, int(3.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(inputs: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of an ``(N, C, H, W)`` batch with reflect padding."""
    if sigma <= 0:
        return inputs.clone()
    n, c, h, w = inputs.shape
    kernel = _gaussian_kernel1d(sigma, inputs.dtype, inputs.device)
    radius = kernel.numel() // 2
    x = inputs.reshape(n * c, 1, h, w)
    # Reflect padding needs pad < size; replicate works for any size when the kernel is huge.
    mode = "reflect" if radius < min(h, w) else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def blur(inputs: Tensor, sigma_fraction: float = 1 / 16) -> Tensor:
    """Strongly blurred input: sigma = ``sigma_fraction`` x the shorter image side.

    At the default (16 px at 256 px, 32 px at 512 px) lesions, vessels and the optic disc's
    edge vanish while the disk's overall colour and vignetting stay, so IG credits fine structure.
    """
    sigma = sigma_fraction * min(inputs.shape[-2:])
    return gaussian_blur(inputs, sigma).clamp_(0.0, 1.0)


def _seeded_noise(inputs: Tensor, seed: int, kind: str) -> Tensor:
    # One pattern per image shape, drawn on the CPU so it is identical on every device and
    # process; broadcast over the batch so results do not depend on batch composition.
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(inputs.shape[1:])
    draw = torch.rand if kind == "uniform" else torch.randn
    noise = draw(shape, generator=generator, dtype=torch.float64)
    return noise.to(device=inputs.device, dtype=inputs.dtype).expand_as(inputs)


def uniform(inputs: Tensor, seed: int = 0) -> Tensor:
    """Uniform noise in [0, 1] from a seeded generator (the same pattern for every image)."""
    return _seeded_noise(inputs, seed, "uniform").clone()


def gaussian(inputs: Tensor, sigma: float = 0.1, seed: int = 0) -> Tensor:
    """The input plus seeded Gaussian noise of standard deviation ``sigma``, clipped to [0, 1]."""
    return (inputs + sigma * _seeded_noise(inputs, seed, "normal")).clamp(0.0, 1.0)


def fov_mean(inputs: Tensor, mask: Tensor | None = None) -> Tensor:
    """A featureless retina: the field of view filled with the image's own mean colour.

    The field of view comes from :func:`medig.preprocess.fov_mask` unless ``mask`` (bool
    ``(N, 1, H, W)``) is given; outside it the baseline is black, like the photograph.
    """
    if mask is None:
        from medig.preprocess import fov_mask

        mask = fov_mask(inputs.detach())
    maskf = mask.to(inputs.dtype)
    area = maskf.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    mean_colour = (inputs * maskf).sum(dim=(-2, -1), keepdim=True) / area
    return (mean_colour * maskf).expand_as(inputs).clone()


class ReferenceSet:
    """A set of healthy reference fundus images used as baselines (expected IG over the set).

    Each reference is resized to the input size; the attributions are averaged over the
    references (Erion et al.'s expected gradients with a deterministic set), and completeness
    holds against the mean reference score.

    Parameters
    ----------
    images : Tensor
        ``(K, C, H, W)`` float images in [0, 1] (or uint8, scaled by 1/255).
    name : str
        Name recorded in the explanation.
    """

    def __init__(self, images: Tensor, name: str = "reference") -> None:
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError("ReferenceSet needs a non-empty (K, C, H, W) tensor of images")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        self.images = images
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def baselines_for(self, inputs: Tensor) -> list[Tensor]:
        """One baseline batch per reference, resized to and broadcast over ``inputs``."""
        refs = self.images.to(device=inputs.device, dtype=inputs.dtype)
        if refs.shape[-2:] != inputs.shape[-2:]:
            refs = F.interpolate(
                refs, size=inputs.shape[-2:], mode="bilinear", antialias=True, align_corners=False
            ).clamp_(0.0, 1.0)
        return [ref.unsqueeze(0).expand_as(inputs) for ref in refs]


_REGISTRY: dict[str, BaselineFn] = {
    "black": black,
    "blur": blur,
    "uniform": uniform,
    "gaussian": gaussian,
    "fov_mean": fov_mean,
}


def register_baseline(name: str, fn: BaselineFn, overwrite: bool = False) -> None:
    """Make ``fn(inputs) -> baselines`` available by ``name`` (in ``explain`` and the CLI)."""
    if not callable(fn):
        raise TypeError(f"baseline {name!r} must be callable")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"baseline {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = fn


def get_baseline(name: str) -> BaselineFn:
    """The baseline function registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown baseline {name!r}; known baselines: {known}") from None


def available_baselines() -> list[str]:
    """Names of the registered baselines."""
    return sorted(_REGISTRY)


def _describe(spec: object) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, (int, float)):
        return f"constant({spec:g})"
    if isinstance(spec, Tensor):
        return "tensor"
    return getattr(spec, "__name__", type(spec).__name__)


def make_baselines(spec: BaselineSpec, inputs: Tensor) -> tuple[list[Tensor | float], list[str]]:
    """Resolve a baseline spec into concrete baselines for ``inputs``.

    Parameters
    ----------
    spec : str, number, Tensor, callable, ReferenceSet or list of these
        A list (or a ReferenceSet) means several baselines whose attributions are averaged.
    inputs : Tensor
        The ``(N, C, H, W)`` batch being explained.

    Returns
    -------
    baselines : list of Tensor or float
        One entry per baseline, each a number or a tensor broadcastable to ``inputs``.
    names : list of str
        A readable name per baseline.
    """
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not specs:
        raise ValueError("baselines must not be an empty list")
    resolved: list[Tensor | float] = []
    names: list[str] = []
    for item in specs:
        if isinstance(item, ReferenceSet):
            refs = item.baselines_for(inputs)
            resolved.extend(refs)
            names.extend(f"{item.name}[{k}]" for k in range(len(refs)))
            continue
        if isinstance(item, str):
            value: Tensor | float = get_baseline(item)(inputs)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            value = float(item)
        elif isinstance(item, Tensor):
            value = item.to(device=inputs.device, dtype=inputs.dtype)
        elif callable(item):
            value = item(inputs)
            if not isinstance(value, Tensor):
                raise TypeError(f"baseline callable {_describe(item)} must return a Tensor")
        else:
            raise TypeError(f"unsupported baseline specification: {type(item).__name__}")
        resolved.append(value)
        names.append(_describe(item))
    return resolved, names
