# SPDX-License-Identifier: Apache-2.0
"""Helpers the checks share: channel-summed maps, pooled cell grids, rank correlation and SSIM.

All of them work on whole batches of torch tensors, on any device, without leaving torch, so the
checks run where the attributions were computed (the GPU in a GPU audit).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medig.preprocess.fov_detection import fov_mask

__all__ = ["FovArg", "average_ranks", "cell_grid", "channel_map", "fov_or_all", "resolve_fov",
           "spearman", "ssim", "topk_overlap"]

#: A check's ``fov`` argument: a bool mask, ``"auto"`` (detected on the images) or None (every
#: pixel).
FovArg = Tensor | Literal["auto"] | None


def channel_map(attributions: Tensor) -> Tensor:
    """``(N, H, W)`` map from ``(N, C, H, W)`` attributions (summed over channels) or ``(N, H, W)``."""
    if attributions.ndim == 4:
        return attributions.sum(dim=1)
    if attributions.ndim == 3:
        return attributions
    raise ValueError(f"expected attributions (N, C, H, W) or maps (N, H, W), got shape "
                     f"{tuple(attributions.shape)}")


def resolve_fov(fov: FovArg, inputs: Tensor) -> Tensor | None:
    """The field of view a check pools over: ``fov`` itself, or for ``"auto"`` the one detected on
    ``inputs`` (images in [0, 1]) by :func:`medig.preprocess.fov_mask`, the detector of the audit.

    On a fundus photograph the black surround holds no attribution: left in, its many tied cells
    dominate a rank comparison, so the check would not give the audit's verdict. None keeps every
    pixel (a full-frame image, or the behaviour before ``"auto"`` became the default).

    Raises
    ------
    ValueError
        If ``fov`` is another string.
    """
    if fov is None or isinstance(fov, Tensor):
        return fov
    if isinstance(fov, str) and fov == "auto":
        if not isinstance(inputs, Tensor) or inputs.ndim != 4 or inputs.shape[0] == 0:
            return None  # nothing to detect on; the check reports the shape itself
        return fov_mask(inputs.detach())
    raise ValueError(f"fov must be a bool mask, 'auto' or None, got {fov!r}")


def fov_or_all(fov: Tensor | None, like: Tensor) -> Tensor:
    """Bool ``(N, H, W)`` field-of-view mask for maps ``like`` (every pixel when ``fov`` is None)."""
    n, h, w = like.shape
    if fov is None:
        return torch.ones((n, h, w), dtype=torch.bool, device=like.device)
    mask = fov.to(like.device).bool()
    if mask.ndim == 4:
        mask = mask[:, 0]
    if mask.ndim == 2:
        mask = mask.expand(n, h, w)
    if tuple(mask.shape) != (n, h, w):
        raise ValueError(f"fov mask of shape {tuple(fov.shape)} does not match maps {(n, h, w)}")
    return mask


def cell_grid(maps: Tensor, fov: Tensor, cell: int, min_cover: float = 0.5
              ) -> tuple[Tensor, Tensor]:
    """Sum of ``maps`` over the field-of-view pixels of each ``cell`` x ``cell`` cell.

    The sum (not the mean) is the cell's share of the attribution, the quantity completeness adds
    up and an occlusion of the cell removes.

    Parameters
    ----------
    maps : Tensor
        ``(N, H, W)`` float maps.
    fov : Tensor
        ``(N, H, W)`` bool field of view.
    cell : int
        Cell side in pixels (sides that are not a multiple are padded with out-of-FOV pixels).
    min_cover : float
        A cell counts (``valid``) when at least this share of it lies in the field of view, so
        cells cut by the rim of the retina, mostly black border, do not weigh like whole ones.

    Returns
    -------
    grid : Tensor
        ``(N, h, w)`` float64 cell sums (0 where no pixel is in the field of view).
    valid : Tensor
        ``(N, h, w)`` bool.
    """
    if cell < 1:
        raise ValueError(f"cell must be >= 1 pixel, got {cell}")
    _, h, w = maps.shape
    pad = (0, (-w) % cell, 0, (-h) % cell)
    inside = F.pad(fov.to(torch.float64), pad)[:, None]
    values = F.pad(maps.to(torch.float64), pad)[:, None] * inside
    area = float(cell * cell)
    count = F.avg_pool2d(inside, cell) * area
    total = F.avg_pool2d(values, cell) * area
    return total[:, 0], (count[:, 0] >= min_cover * area) & (count[:, 0] > 0)


def average_ranks(values: Tensor, valid: Tensor) -> Tensor:
    """Ranks (1-based, ties averaged, as :func:`scipy.stats.rankdata`) of each row's valid entries.

    ``values`` and ``valid`` are ``(N, M)``; invalid entries get rank 0 and do not count.
    """
    x = values.to(torch.float64).masked_fill(~valid, math.inf)
    ordered = x.sort(dim=1).values.contiguous()
    xc = x.contiguous()
    below = torch.searchsorted(ordered, xc, side="left")  # valid entries smaller than x
    upto = torch.searchsorted(ordered, xc, side="right")  # ... smaller or equal
    ranks = (below + upto + 1).to(torch.float64) / 2.0
    return ranks.masked_fill(~valid, 0.0)


def _pearson(x: Tensor, y: Tensor, valid: Tensor) -> Tensor:
    w = valid.to(torch.float64)
    count = w.sum(dim=1)
    mx = (x * w).sum(dim=1) / count.clamp_min(1)
    my = (y * w).sum(dim=1) / count.clamp_min(1)
    dx, dy = (x - mx[:, None]) * w, (y - my[:, None]) * w
    num = (dx * dy).sum(dim=1)
    den = (dx.square().sum(dim=1) * dy.square().sum(dim=1)).sqrt()
    r = num / den
    # Fewer than 3 cells, or a constant map: no rank order to compare.
    return r.masked_fill((count < 3) | (den <= 0), math.nan).clamp(-1.0, 1.0)


def spearman(x: Tensor, y: Tensor, valid: Tensor | None = None) -> Tensor:
    """Spearman rank correlation of each row of ``x`` with the same row of ``y``.

    Parameters
    ----------
    x, y : Tensor
        ``(N, ...)`` values, flattened per row.
    valid : Tensor, optional
        ``(N, ...)`` bool: the entries compared (default all).

    Returns
    -------
    Tensor
        ``(N,)`` float64 in [-1, 1]; NaN where a row has fewer than 3 valid entries or one of the
        two is constant (no order to compare).
    """
    n = x.shape[0]
    x, y = x.reshape(n, -1), y.reshape(n, -1)
    v = (torch.ones_like(x, dtype=torch.bool) if valid is None
         else valid.reshape(n, -1).to(x.device))
    return _pearson(average_ranks(x, v), average_ranks(y, v), v)


def topk_overlap(x: Tensor, y: Tensor, valid: Tensor, fraction: float) -> Tensor:
    """Share of the top ``fraction`` of valid entries of ``x`` that are also top in ``y``.

    ``k = ceil(fraction * valid count)`` per row (at least 1); entries are ranked by value, highest
    first (ties broken by position). Returns ``(N,)`` float64 in [0, 1] (NaN for empty rows).
    """
    n = x.shape[0]
    x, y, v = x.reshape(n, -1), y.reshape(n, -1), valid.reshape(n, -1)
    count = v.sum(dim=1)
    k = (count.to(torch.float64) * fraction).ceil().clamp_min(1).long()
    kmax = int(k.max()) if n else 0
    xs = x.to(torch.float64).masked_fill(~v, -math.inf)
    ys = y.to(torch.float64).masked_fill(~v, -math.inf)
    top_x = xs.topk(kmax, dim=1).indices
    top_y = ys.topk(kmax, dim=1).indices
    keep = torch.arange(kmax, device=x.device)[None] < k[:, None]
    in_x = torch.zeros_like(v).scatter_(1, top_x, keep)
    in_y = torch.zeros_like(v).scatter_(1, top_y, keep)
    shared = (in_x & in_y).sum(dim=1).to(torch.float64)
    return (shared / k.to(torch.float64)).masked_fill(count == 0, math.nan)


def ssim(x: Tensor, y: Tensor, valid: Tensor | None = None, window: int = 7,
         data_range: float = 1.0) -> Tensor:
    """Structural similarity (Wang et al. 2004) of ``(N, H, W)`` images, one value per image.

    The definition and defaults are those of :func:`skimage.metrics.structural_similarity`
    (uniform ``window`` x ``window`` window, sample covariances, K1 = 0.01, K2 = 0.03, the
    border of half a window left out), computed batched in torch. With ``valid``, only windows
    lying wholly inside the valid region are averaged, so the constant black outside the retina
    (identical in any two maps) does not count as agreement. NaN where no window fits.
    """
    n, h, w = x.shape
    win = min(window, h, w)
    win -= 1 - win % 2  # odd
    if win < 3:
        return torch.full((n,), math.nan, dtype=torch.float64, device=x.device)
    a, b = x.to(torch.float64)[:, None], y.to(torch.float64)[:, None]
    np_ = win * win
    cov_norm = np_ / (np_ - 1)

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, win, stride=1)

    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    s = s[:, 0]
    if valid is None:
        inside = torch.ones_like(s, dtype=torch.bool)
    else:
        inside = -F.max_pool2d(-valid.to(torch.float64)[:, None], win, stride=1)[:, 0] > 0.5
    count = inside.sum(dim=(1, 2))
    total = (s * inside).sum(dim=(1, 2))
    return (total / count.clamp_min(1)).masked_fill(count == 0, math.nan)
