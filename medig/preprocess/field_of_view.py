# SPDX-License-Identifier: Apache-2.0
"""The field of view of fundus photographs as a value and its geometry: :class:`FieldOfView` (what
:func:`~medig.preprocess.detect_fov` reports), :func:`circle_mask`, and the checks that say
whether a fitted circle is a camera's field of view at all (:func:`disc_checks`).

Coordinates
-----------
All circles and boxes in :mod:`medig.preprocess` use *continuous pixel coordinates*: pixel ``(i, j)``
(row ``i``, column ``j``) covers ``[j, j + 1] x [i, i + 1]`` and its centre is ``(j + 0.5, i + 0.5)``.
A disk centred in a 100 x 100 image has ``cx = cy = 50``. This is the convention of
``torchvision.ops.roi_align(aligned=True)`` and of PIL's ``crop``/``resize(box=...)``, and it makes
rescaling exact: a point at ``x`` in a ``w``-pixel-wide image is at ``x * W / w`` in a ``W``-wide one.

What the disc checks tell apart
-------------------------------
A retina disk on a black surround from a circle fitted to something else (the bright part of a
scene, a vignetted crop). A fundus camera images the retina through a circular aperture: outside
it the frame is *black and featureless* (a few grey levels of sensor and JPEG noise, perhaps
burned-in text), inside it the retina is *lit* nearly everywhere. A circle fitted to a full-frame
photograph (a retina crop without border, a scene, a document) fails one or both: what lies
outside is as bright and textured as what lies inside. All checks run batched on the small
detection copy (uint8 levels of the channel maximum, longest side ~256 px), in its continuous
pixel coordinates.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FOV_SHAPES", "FieldOfView", "circle_mask", "disc_checks"]

#: Kinds of field of view, indexed by :attr:`FieldOfView.shape`.
FOV_SHAPES = ("none", "circle", "cut", "full_frame")


@dataclass(frozen=True)
class FieldOfView:
    """The field of view of a batch of images, as :func:`~medig.preprocess.detect_fov` found it.

    Attributes
    ----------
    circles : Tensor
        float32 (N, 3) ``cx, cy, r`` in each image's continuous pixel coordinates. A full-frame
        field of view is the circle through the frame's corners (its mask is the whole frame).
    bands : Tensor
        float32 (N, 2) ``y_top, y_bottom``: the rows where the field is visible.
    shape : Tensor
        int64 (N,) index into :data:`FOV_SHAPES`.
    sizes : Tensor
        int64 (N, 2) ``H, W`` of each image.
    """

    circles: Tensor
    bands: Tensor
    shape: Tensor
    sizes: Tensor

    def __len__(self) -> int:
        return len(self.circles)

    def __getitem__(self, index: int | slice | Tensor) -> FieldOfView:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return FieldOfView(self.circles[index], self.bands[index], self.shape[index],
                           self.sizes[index])

    @staticmethod
    def cat(parts: Sequence[FieldOfView]) -> FieldOfView:
        """Concatenate several :class:`FieldOfView` (same device)."""
        return FieldOfView(*(torch.cat([getattr(p, f) for p in parts])
                             for f in ("circles", "bands", "shape", "sizes")))

    @property
    def found(self) -> Tensor:
        """bool (N,): a field of view was found (any shape but ``"none"``)."""
        return self.shape != 0

    @property
    def full_frame(self) -> Tensor:
        """bool (N,): the field of view is the whole frame (no black surround)."""
        return self.shape == 3

    def shape_names(self) -> list[str]:
        """The shape of each field of view, as names from :data:`FOV_SHAPES`."""
        return [FOV_SHAPES[k] for k in self.shape.tolist()]

    def mask(self) -> Tensor:
        """bool (N, 1, H, W) masks (all images must share one size)."""
        if len(self) and not bool((self.sizes == self.sizes[:1]).all()):
            raise ValueError("images of different sizes: take the masks one image at a time")
        h, w = (int(v) for v in self.sizes[0])
        return circle_mask(self.circles, h, w, self.bands)


def circle_mask(circles: Tensor, height: int, width: int, bands: Tensor | None = None) -> Tensor:
    """Rasterise circles into boolean masks, intersected with the frame.

    Parameters
    ----------
    circles : Tensor
        (N, 3) ``cx, cy, r`` in continuous pixel coordinates.
    height, width : int
        Size of the output masks.
    bands : Tensor, optional
        (N, 2) ``y_top, y_bottom``: also keep only pixel centres between these rows (a disk cut by
        the black band of a camera mask).

    Returns
    -------
    Tensor
        bool (N, 1, height, width): pixel centres inside (or on) the circle.
    """
    dev = circles.device
    c = circles.float()
    ys = torch.arange(height, device=dev, dtype=torch.float32).view(1, 1, -1, 1) + 0.5
    xs = torch.arange(width, device=dev, dtype=torch.float32).view(1, 1, 1, -1) + 0.5
    cx, cy, r = (c[:, i].view(-1, 1, 1, 1) for i in range(3))
    mask = (xs - cx).square() + (ys - cy).square() <= r.square()
    if bands is not None:
        b = bands.float()
        mask = mask & (ys >= b[:, 0].view(-1, 1, 1, 1)) & (ys <= b[:, 1].view(-1, 1, 1, 1))
    return mask


#: Width of the ring around the fitted circle left out of both checks, as a fraction of the
#: radius (plus 1.5 working pixels): the vignetted, JPEG-ringing rim belongs to neither side.
RING = 0.04
#: The outside must cover at least this share of the frame to be judged; less means the disk
#: fills the frame (then it is a full-frame photograph).
MIN_OUTSIDE = 0.02
#: The median outside level may exceed the background level by at most this fraction of the
#: disk's contrast (plus :data:`OUTSIDE_SLACK` grey levels of sensor and JPEG noise, which
#: matter on a dark, low-contrast photograph). Measured (``bench/quality_thresholds.py`` data):
#: the black surrounds of ``retina.jpg`` and its variants, the bundled examples and generated
#: photographs sit at 0-1.4% of the contrast; the outside of a circle fitted to a full-frame
#: crop reaches 14% where the crop's corners are the vignetted rim, to a scene 70-135%.
OUTSIDE_LEVEL = 0.06
OUTSIDE_SLACK = 4.0
#: At most this share of the outside may be as bright as the disk (text, labels, scale bars).
OUTSIDE_BRIGHT = 0.25
#: At least this share of the inside must be above the disk threshold (dark lesions, a dark
#: macula and vessels are holes of a few percent).
INSIDE_FILLED = 0.8
#: Smallest disk, as its share of the frame: a smaller "disk" is a blob, not an aperture.
MIN_DISK = 0.02
#: A circle is cut by the frame (or by a camera mask) when it leaves the visible area by more
#: than this fraction of its radius.
CUT_SLACK = 0.02


def _masked_median(values: Tensor, mask: Tensor) -> Tensor:
    v = torch.where(mask, values, torch.nan).flatten(1)
    return torch.nan_to_num(torch.nanquantile(v, 0.5, dim=1), nan=0.0)


def disc_checks(v8: Tensor, binary: Tensor, circles: Tensor, bands: Tensor, bg: Tensor,
                fg: Tensor) -> tuple[Tensor, Tensor]:
    """Whether each fitted circle is a field of view, and whether it is cut by the frame.

    Parameters
    ----------
    v8 : Tensor
        uint8 (N, h, w) channel maximum of the small copy.
    binary : Tensor
        bool (N, h, w) thresholded disk candidate.
    circles, bands : Tensor
        (N, 3) ``cx, cy, r`` and (N, 2) visible rows, in the small copy's continuous coordinates.
    bg, fg : Tensor
        (N,) background and disk levels (0-255).

    Returns
    -------
    disc : Tensor
        bool (N,): the circle is a camera's field of view on a black surround.
    cut : Tensor
        bool (N,): it is cut by the frame edges or by black camera-mask rows.
    """
    n, h, w = v8.shape
    dev = v8.device
    c, b = circles.float(), bands.float()
    cx, cy, r = (c[:, i].view(-1, 1, 1) for i in range(3))
    top, bottom = b[:, 0].view(-1, 1, 1), b[:, 1].view(-1, 1, 1)
    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, -1, 1) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, -1) + 0.5
    d = torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    ring = RING * r + 1.5
    inside = (d <= r - ring) & (ys >= top + ring) & (ys <= bottom - ring)
    outside = (d >= r + ring) | (ys <= top - ring) | (ys >= bottom + ring)
    area = float(h * w)
    n_in = inside.flatten(1).sum(1)
    n_out = outside.flatten(1).sum(1)
    level = (fg - bg).float()
    out_median = _masked_median(v8.float(), outside)
    out_bright = (binary & outside).flatten(1).sum(1) / n_out.clamp(min=1)
    in_filled = (binary & inside).flatten(1).sum(1) / n_in.clamp(min=1)
    disc = ((n_out >= MIN_OUTSIDE * area) & (n_in >= MIN_DISK * area)
            & (out_median <= bg.float() + OUTSIDE_LEVEL * level + OUTSIDE_SLACK)
            & (out_bright <= OUTSIDE_BRIGHT) & (in_filled >= INSIDE_FILLED))
    slack = CUT_SLACK * c[:, 2] + 0.5
    cut = ((c[:, 0] - c[:, 2] < -slack) | (c[:, 0] + c[:, 2] > w + slack)
           | (c[:, 1] - c[:, 2] < -slack) | (c[:, 1] + c[:, 2] > h + slack)
           | (b[:, 0] > c[:, 1] - c[:, 2] + slack) | (b[:, 1] < c[:, 1] + c[:, 2] - slack))
    return disc, cut
