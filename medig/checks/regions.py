# SPDX-License-Identifier: Apache-2.0
"""What each image's evidence lies on: the share of positive and negative attribution per
anatomical region (:func:`region_evidence`), and the strongest evidence regions
(:func:`top_regions`), named by the anatomy they overlap.

A region that holds far more evidence than its share of the area is what the model looked at.
The regions are those of :meth:`medig.preprocess.Anatomy.regions`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GRID", "TOP_LEVEL", "region_evidence", "top_regions"]

#: Evidence regions are found on the map pooled to this many cells a side.
GRID = 32
#: A cell belongs to an evidence region when its pooled positive evidence is at least this share
#: of the image's strongest cell.
TOP_LEVEL = 0.35


def _signed_parts(maps: Tensor) -> tuple[Tensor, Tensor]:
    a = maps.detach().double().sum(1, keepdim=True)
    a = torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    return a.clamp(min=0), (-a).clamp(min=0)


def region_evidence(maps: Tensor, regions: dict[str, Tensor]) -> list[dict[str, dict[str, float]]]:
    """Per image and region: ``pos`` and ``neg`` (shares of the positive and of the negative
    attribution mass that fall in it) and ``area`` (its share of the frame).

    Parameters
    ----------
    maps : Tensor
        ``(N, C, H, W)`` attributions (summed over channels).
    regions : dict of str to Tensor
        Disjoint bool ``(N, 1, H, W)`` masks (:meth:`medig.preprocess.Anatomy.regions`).

    Returns
    -------
    list of dict
        One ``{region: {"pos", "neg", "area"}}`` per image; a share is NaN where the image has no
        attribution of that sign.
    """
    pos, neg = _signed_parts(maps)
    tp, tn = pos.flatten(1).sum(1), neg.flatten(1).sum(1)
    out: list[dict[str, dict[str, float]]] = [{} for _ in range(maps.shape[0])]
    for name, mask in regions.items():
        m = mask.to(pos.device).expand_as(pos)
        p = ((pos * m).flatten(1).sum(1) / tp).tolist()
        q = ((neg * m).flatten(1).sum(1) / tn).tolist()
        area = m.flatten(1).double().mean(1).tolist()
        for i in range(len(out)):
            out[i][name] = {"pos": p[i], "neg": q[i], "area": area[i]}
    return out


def _components(cells: Tensor) -> Tensor:
    """8-connected component labels of bool (N, 1, g, g) (0 = background), by propagating the
    largest cell index until it settles (at most g * g / 2 rounds, a few on real maps)."""
    n, _, g, _ = cells.shape
    index = torch.arange(1, g * g + 1, device=cells.device, dtype=torch.float32).view(1, 1, g, g)
    labels = torch.where(cells, index.expand(n, 1, g, g), torch.zeros((), device=cells.device))
    for _ in range(g * g):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1)
        grown = torch.where(cells, grown, torch.zeros((), device=cells.device))
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels.long()


def top_regions(maps: Tensor, regions: dict[str, Tensor], k: int = 3) -> list[list[dict[str, Any]]]:
    """The ``k`` strongest evidence regions of each image.

    The positive part of the map is pooled to :data:`GRID` cells a side and lightly smoothed;
    cells at :data:`TOP_LEVEL` of the strongest one or more form 8-connected regions (grown by one
    cell), ranked by the positive evidence they hold.

    Returns
    -------
    list of list of dict
        Per image, up to ``k`` of ``{"share": share of the image's positive evidence, "where":
        [x0, y0, x1, y1] as fractions of the frame, "on": the region of ``regions`` holding most of
        its evidence}``, strongest first; empty where there is no positive evidence.
    """
    pos, _ = _signed_parts(maps)
    n, _, h, w = pos.shape
    g = min(GRID, h, w)
    pooled = F.adaptive_avg_pool2d(pos.float(), g)
    smooth = F.avg_pool2d(F.pad(pooled, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    peak = smooth.flatten(1).amax(1).view(n, 1, 1, 1)
    cells = (smooth >= TOP_LEVEL * peak) & (peak > 0)
    labels = _components(cells)
    # one cell around each region: the smoothing's support, where its evidence's edges lie
    labels = torch.where(labels > 0, labels,
                         F.max_pool2d(labels.float(), 3, stride=1, padding=1).long())
    # each pixel's component, for the evidence mass and the anatomy it lies on
    pixel_labels = F.interpolate(labels.float(), size=(h, w), mode="nearest").long()
    total = pos.flatten(1).sum(1)
    names = list(regions)
    stacked = torch.stack([regions[r].to(pos.device).expand(n, 1, h, w) for r in names], 0)
    out: list[list[dict[str, Any]]] = []
    for i in range(n):
        found: list[dict[str, Any]] = []
        ids = torch.unique(labels[i])
        for lab in ids[ids > 0].tolist():
            in_comp = pixel_labels[i] == lab
            mass = pos[i] * in_comp
            share = float(mass.sum() / total[i]) if total[i] > 0 else 0.0
            ys, xs = torch.nonzero(labels[i, 0] == lab, as_tuple=True)
            where = [float(xs.min()) / g, float(ys.min()) / g, float(xs.max() + 1) / g,
                     float(ys.max() + 1) / g]
            per_region = (stacked[:, i] * mass).flatten(1).sum(1)
            found.append({"share": share, "where": where,
                          "on": names[int(per_region.argmax())]})
        found.sort(key=lambda r: -r["share"])
        out.append(found[:k])
    return out
