# SPDX-License-Identifier: Apache-2.0
"""Planted shortcuts: marks that a model can read instead of the retina, at known places.

:func:`corner_stamp` burns a bright square into a corner of the frame, outside the field of view
(where cameras burn in dates and clinic names). A model trained to read it is the known answer of
the "evidence-outside-retina" flag and of the cohort findings (``--model demo-shortcut``).
"""
from __future__ import annotations

import torch

__all__ = ["STAMP_BOX", "corner_stamp", "stamp_box"]

#: The stamp, relative to the field-of-view circle: ``x0, y0, x1, y1`` in units of its radius
#: from its centre (top-right corner). Its nearest point is 1.05 r from the centre (outside the
#: retina) and it stays inside the square crop the audit cuts around the circle (``1.03 r``).
STAMP_BOX = (0.74, -0.9, 0.9, -0.74)


def stamp_box(cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(N, 4) ``x0, y0, x1, y1`` of the stamp in frame pixels, from the FOV circles."""
    x0, y0, x1, y1 = STAMP_BOX
    return torch.stack([cx + x0 * r, cy + y0 * r, cx + x1 * r, cy + y1 * r], dim=1)


def corner_stamp(images: torch.Tensor, boxes: torch.Tensor, on: torch.Tensor,
                 level: float = 0.95) -> torch.Tensor:
    """Burn a bright grey square into ``images`` where ``on`` (a copy; uint8 in, uint8 out).

    Parameters
    ----------
    images : torch.Tensor
        uint8 ``(N, 3, H, W)``.
    boxes : torch.Tensor
        ``(N, 4)`` from :func:`stamp_box`.
    on : torch.Tensor
        bool ``(N,)``: which images get the stamp.
    level : float
        Grey level of the stamp in ``[0, 1]``.
    """
    n, _, h, w = images.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, -1, 1) + 0.5
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, -1) + 0.5
    b = boxes.float()
    inside = ((xs >= b[:, 0, None, None]) & (xs <= b[:, 2, None, None])
              & (ys >= b[:, 1, None, None]) & (ys <= b[:, 3, None, None]) & on.view(-1, 1, 1))
    value = torch.tensor(round(level * 255), dtype=torch.uint8)
    return torch.where(inside[:, None], value, images)
