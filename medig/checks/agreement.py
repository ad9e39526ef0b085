# SPDX-License-Identifier: Apache-2.0
"""Baseline agreement: do two attribution maps of the same prediction rank the retina alike?

IG needs a reference image (the *baseline*), and the choice is arbitrary: a black photograph and a
blurred one can credit different pixels for the same output (Sturmfels et al., "Visualizing the
impact of feature attribution baselines", Distill 2020). medig's default audit averages the maps of
two baselines; this check says, per image, whether they told the same story.

Both maps are summed over colour channels and pooled to cells of ``cell`` x ``cell`` pixels
(the sum of the attribution inside the field of view of each cell), so that pixel-level noise
(IG's speckle) does not dominate; cells less than half inside the field of view are left out.
Agreement is the Spearman rank correlation of the two pooled maps (1: same order, 0: unrelated),
and the top-k overlap is the share of the top 5% cells (most positive evidence, what the overlay
paints brightest green) that the two maps have in common.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from medig.checks._grid import cell_grid, channel_map, fov_or_all, spearman, topk_overlap

__all__ = ["DEFAULT_CELL", "TOPK_FRACTION", "baseline_agreement", "baseline_topk_overlap",
           "per_baseline_agreement"]

#: Cell side in pixels of the pooled grid (16 px: 256 cells at 256 px, 1024 at 512 px).
DEFAULT_CELL = 16
#: Share of the valid cells counted as the "top" of a map by :func:`baseline_topk_overlap`.
TOPK_FRACTION = 0.05


def _pooled(a: Tensor, b: Tensor, fov: Tensor | None, cell: int) -> tuple[Tensor, Tensor, Tensor]:
    ma, mb = channel_map(a), channel_map(b)
    if ma.shape != mb.shape:
        raise ValueError(f"the two attribution maps differ in shape: {tuple(a.shape)} vs "
                         f"{tuple(b.shape)}")
    mask = fov_or_all(fov, ma)
    ga, valid = cell_grid(ma.detach(), mask, cell)
    gb, _ = cell_grid(mb.detach(), mask, cell)
    return ga, gb, valid


def baseline_agreement(a: Tensor, b: Tensor, fov: Tensor | None = None, cell: int = DEFAULT_CELL
                       ) -> Tensor:
    """Spearman rank correlation of two attribution maps, pooled to cells inside the field of view.

    Parameters
    ----------
    a, b : Tensor
        ``(N, C, H, W)`` attributions (summed over channels) or ``(N, H, W)`` maps of the same
        images, e.g. ``Explanation.per_baseline[0]`` and ``[1]``.
    fov : Tensor, optional
        Bool field of view ``(N, 1, H, W)`` or ``(N, H, W)``; None uses every pixel. This
        function sees maps, not images, so it cannot find the field of view itself: for fundus
        photographs pass ``medig.preprocess.fov_mask(images)`` (as the audit does), or the black
        surround's tied cells weigh in the ranks.
    cell : int
        Side of the pooling cells in pixels.

    Returns
    -------
    Tensor
        ``(N,)`` float64 in [-1, 1]: 1 when the maps rank the cells identically, about 0 for
        unrelated maps; NaN when a map is constant or fewer than 3 cells are in the field of view.
    """
    ga, gb, valid = _pooled(a, b, fov, cell)
    return spearman(ga, gb, valid)


def baseline_topk_overlap(a: Tensor, b: Tensor, fov: Tensor | None = None,
                          cell: int = DEFAULT_CELL, fraction: float = TOPK_FRACTION) -> Tensor:
    """Share of the top ``fraction`` cells of map ``a`` (most positive) that are top cells of ``b``.

    Same pooling as :func:`baseline_agreement`. Returns ``(N,)`` float64 in [0, 1]; two unrelated
    maps overlap by about ``fraction`` by chance.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ga, gb, valid = _pooled(a, b, fov, cell)
    return topk_overlap(ga, gb, valid, fraction)


def per_baseline_agreement(per_baseline: Sequence[Tensor], fov: Tensor | None = None,
                           cell: int = DEFAULT_CELL, fraction: float = TOPK_FRACTION
                           ) -> tuple[Tensor, Tensor] | None:
    """Agreement and top-k overlap of the maps of two or more baselines (the least agreeing pair).

    With more than two baselines every pair is compared and the lowest value is kept: one
    baseline that tells another story makes the average map baseline-dependent. Returns None for
    fewer than two baselines.
    """
    if len(per_baseline) < 2:
        return None
    agreement: Tensor | None = None
    overlap: Tensor | None = None
    for a, b in itertools.combinations(per_baseline, 2):
        ga, gb, valid = _pooled(a, b, fov, cell)
        r = spearman(ga, gb, valid)
        o = topk_overlap(ga, gb, valid, fraction)
        agreement = r if agreement is None else torch.fmin(agreement, r)
        overlap = o if overlap is None else torch.fmin(overlap, o)
    assert agreement is not None and overlap is not None
    return agreement, overlap
