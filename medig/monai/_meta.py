# SPDX-License-Identifier: Apache-2.0
"""MetaTensor bookkeeping shared by the MONAI adapters (no attribution or image logic here)."""
from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from torch import Tensor

__all__ = ["crop_resize_index_map", "plain", "with_meta"]


def plain(x: Tensor) -> Tensor:
    """The data of ``x`` as a plain :class:`torch.Tensor` (medig's core never sees a MetaTensor).

    MetaTensor's ``__torch_function__`` runs on every op of a Captum path integral and would try to
    propagate metadata through hundreds of forward/backward passes; the numbers are the same either
    way, so the core gets the bare tensor and the metadata is re-attached once at the end.
    """
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def with_meta(data: Tensor, like: Any, meta_updates: dict[str, Any] | None = None) -> Tensor:
    """Wrap ``data`` in a MetaTensor carrying a copy of ``like``'s metadata (plus ``meta_updates``).

    A plain tensor ``like`` gives a plain tensor back, as MONAI transforms do when
    ``set_track_meta(False)`` or when called on plain tensors.
    """
    if not isinstance(like, MetaTensor):
        return data
    # copy_meta_from rather than MetaTensor(data, meta=...): the constructor re-parses the meta and
    # fails on a collated batch's (one value per image) entries.
    out = data.as_subclass(MetaTensor)
    out.copy_meta_from(like, copy_attr=True)
    if meta_updates:
        out.meta = {**out.meta, **meta_updates}
    return out


def crop_resize_index_map(
    box: Tensor, size: int, reverse_indexing: bool, rank: int
) -> torch.Tensor:
    """Homogeneous matrix from output voxel indices to input voxel indices of a crop + resize.

    Parameters
    ----------
    box : Tensor
        ``(4,)`` ``x0, y0, x1, y1`` in continuous pixel coordinates of the ``(H, W)`` image (pixel
        ``(i, j)`` covers ``[j, j + 1] x [i, i + 1]``, the convention of :mod:`medig.preprocess`).
    size : int
        Output side: output index ``(r, c)`` (row, column) has its centre at
        ``x = x0 + (c + 0.5) (x1 - x0) / size``, i.e. input column index ``x - 0.5``.
    reverse_indexing : bool
        The input's spatial axes are ``(W, H)`` (MONAI's ``PILReader`` default) while the output's
        are ``(H, W)``: the map also swaps the two axes.
    rank : int
        Size of the affine (``spatial_dims + 1``); MONAI stores 2-D affines as 4 x 4.

    Returns
    -------
    Tensor
        ``(rank, rank)`` float64; ``new_affine = old_affine @ matrix``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = (x1 - x0) / size, (y1 - y0) / size
    row = (sy, y0 + 0.5 * sy - 0.5)  # input row index = sy * r + offset
    col = (sx, x0 + 0.5 * sx - 0.5)  # input column index = sx * c + offset
    m = torch.eye(rank, dtype=torch.float64)
    m[0, 0] = m[1, 1] = 0.0
    # Output axis 0 is the row, axis 1 the column; input axis 0 is the row, or the column when reversed.
    first, second = (col, row) if reverse_indexing else (row, col)
    m[0, 1 if reverse_indexing else 0] = first[0]
    m[1, 0 if reverse_indexing else 1] = second[0]
    m[0, -1], m[1, -1] = first[1], second[1]
    return m
