# SPDX-License-Identifier: Apache-2.0
"""Occlusion cross-check: does IG rank the retina's regions like occluding them does?

Occlusion (Zeiler & Fergus 2014) needs no gradients and no reference path: it replaces one patch
at a time by a fill and records how much the explained output drops. It is a different, model-
agnostic estimate of the same question IG answers, so agreement between the two, pooled to the
same patch grid, is evidence that the IG map is not a quadrature or gradient artefact; Sayres et
al. (Ophthalmology 2019), on fundus photographs, compared the two. This runs Captum's
:class:`captum.attr.Occlusion` on a grid of non-overlapping patches (batched:
``perturbations_per_eval`` patterns per forward pass), the fill being the blurred image as for
:func:`medig.checks.deletion_curve`, and compares the maps with the Spearman rank correlation of
the IG attribution summed over each patch (inside the field of view).

Cost: one forward pass per patch per image (``(H / patch)^2``, 256 at the default 16 x 16 grid),
which is why it is optional in the audit (``--cross-check occlusion``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from medig.attr.chunking import auto_chunk_size
from medig.checks._grid import FovArg, cell_grid, channel_map, fov_or_all, resolve_fov, spearman
from medig.checks.deletion import make_fill

__all__ = ["DEFAULT_GRID", "OcclusionResult", "occlusion_agreement"]

#: Patches per image side of the default grid.
DEFAULT_GRID = 16


@dataclass
class OcclusionResult:
    """Outcome of :func:`occlusion_agreement`.

    Attributes
    ----------
    agreement : Tensor
        ``(N,)`` Spearman correlation of the occlusion and IG maps on the patch grid.
    occlusion : Tensor
        ``(N, h, w)`` output drop when each patch is occluded.
    patch : int
        Patch side in pixels.
    """

    agreement: Tensor
    occlusion: Tensor
    patch: int


def occlusion_agreement(
    forward_func: Callable[[Tensor], Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: int | list[int] | Tensor | None,
    fov: FovArg = "auto",
    patch: int | None = None,
    fill: str | float | Tensor | Callable[[Tensor], Tensor] = "blur",
    internal_batch_size: int | Literal["auto"] = "auto",
) -> OcclusionResult:
    """Captum's Occlusion on a patch grid and its rank agreement with IG pooled to that grid.

    Parameters
    ----------
    forward_func : callable
        The explained output ``(N, C, H, W) -> (N, K)``.
    inputs : Tensor
        ``(N, C, H, W)`` images.
    attributions : Tensor
        IG attributions ``(N, C, H, W)`` (or ``(N, H, W)`` maps) of the same images and target.
    target : int, list, Tensor or None
        Output index per image.
    fov : Tensor, "auto" or None
        Bool field of view; patches less than half inside it are left out of the comparison.
        ``"auto"`` (default): detected on ``inputs`` by :func:`medig.preprocess.fov_mask`, as the
        audit does; None: every patch (the default before ``"auto"``).
    patch : int, optional
        Patch side in pixels; default ``H // 16`` (a 16 x 16 grid).
    fill : str, float, Tensor or callable
        What an occluded patch is replaced with (default the blurred image).
    internal_batch_size : int or "auto"
        Occluded images per forward pass.

    Returns
    -------
    OcclusionResult
    """
    from captum.attr import Occlusion

    if not isinstance(inputs, Tensor) or inputs.ndim != 4:
        raise ValueError("occlusion_agreement expects a batched input tensor (N, C, H, W)")
    n, c, h, w = inputs.shape
    side = patch or max(1, min(h, w) // DEFAULT_GRID)
    x = inputs.detach()
    filler = make_fill(fill, x).detach()
    per_eval = auto_chunk_size(x) if internal_batch_size == "auto" else int(internal_batch_size)
    tgt = None if target is None else torch.as_tensor(target, dtype=torch.long,
                                                      device=x.device).reshape(-1).expand(n)
    with torch.no_grad():
        occ = Occlusion(forward_func).attribute(
            x, sliding_window_shapes=(c, side, side), strides=(c, side, side),
            baselines=filler, target=None if tgt is None else tgt.tolist(),
            perturbations_per_eval=max(1, per_eval // max(n, 1)))
    occ_map = channel_map(occ.detach()) / c  # Captum spreads the drop over the window's channels
    amap = channel_map(attributions.detach().to(x.device))
    mask = fov_or_all(resolve_fov(fov, x), amap)
    every = torch.ones_like(mask)
    # The occlusion map is constant on each patch: its value is the patch's drop.
    occ_grid, _ = cell_grid(occ_map, every, side)
    ig_grid, valid = cell_grid(amap, mask, side)
    occ_grid = occ_grid / float(side * side)
    return OcclusionResult(agreement=spearman(occ_grid, ig_grid, valid), occlusion=occ_grid,
                           patch=side)
