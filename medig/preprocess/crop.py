# SPDX-License-Identifier: Apache-2.0
"""Square crops around the field of view, with zero padding and PIL-matching antialiased resizing.

Boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates (see :mod:`medig.preprocess.fov`).
:func:`fov_boxes` snaps them to the pixel grid, so a crop is an exact sub-array (plus zero padding
where the box leaves the frame) that is then resized: the images, their FOV masks and any lesion
masks cropped with the same boxes stay aligned to the pixel, and the downscaled crop equals PIL's
``Image.crop(box).resize(size, BILINEAR)`` (torch's antialiased bilinear kernel is the PIL filter).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medig.preprocess.fov import _check_batch, fov_circles

__all__ = ["crop_boxes", "crop_to_fov", "fov_boxes"]


def fov_boxes(circles: Tensor, margin: float = 0.03) -> Tensor:
    """Square boxes centred on the FOV circles, snapped to the pixel grid.

    The side is ``round(2 r (1 + margin))`` pixels and the box is centred on ``(cx, cy)`` to the
    nearest pixel, so after :func:`crop_boxes` to ``size`` the disk is centred (within half an
    input pixel) and its radius is ``size / (2 (1 + margin))`` output pixels. Boxes may extend
    beyond the frame (disk cut by the frame, or small margins): the crop is zero-padded there.

    Parameters
    ----------
    circles : Tensor
        (N, 3) ``cx, cy, r`` from :func:`~medig.preprocess.fov_circles` or
        :func:`~medig.preprocess.detect_fov_circles`.
    margin : float, optional
        Extra border around the disk, as a fraction of the radius (default 0.03). Must be > -1.

    Returns
    -------
    Tensor
        float32 (N, 4) ``x0, y0, x1, y1`` with integer values.
    """
    if circles.ndim != 2 or circles.shape[1] != 3:
        raise ValueError(f"circles must be (N, 3), got {tuple(circles.shape)}")
    if margin <= -1:
        raise ValueError(f"margin must be > -1, got {margin}")
    c = circles.float()
    side = torch.clamp(torch.round(2 * c[:, 2] * (1 + margin)), min=1.0)
    x0 = torch.round(c[:, 0] - side / 2)
    y0 = torch.round(c[:, 1] - side / 2)
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


def _resize(x: Tensor, size: tuple[int, int], mode: str, antialias: bool) -> Tensor:
    """Resize (1, C, h, w) to ``size`` keeping the dtype; uint8 stays uint8 on CPU (fast kernel)."""
    if mode == "nearest":
        if x.dtype == torch.bool:
            return F.interpolate(x.to(torch.uint8), size=size, mode="nearest-exact").bool()
        return F.interpolate(x, size=size, mode="nearest-exact")
    dtype = x.dtype
    # torch's antialiased uint8 kernel is CPU-only, and only for 1-4 channels.
    if dtype == torch.uint8 and x.device.type == "cpu" and x.shape[1] <= 4:
        return F.interpolate(x, size=size, mode="bilinear", antialias=antialias,
                             align_corners=False)
    y = F.interpolate(x.float(), size=size, mode="bilinear", antialias=antialias,
                      align_corners=False)
    if dtype == torch.uint8:
        return y.round_().clamp_(0, 255).to(torch.uint8)
    if dtype == torch.bool:
        return y > 0.5
    return y.to(dtype)


def crop_boxes(
    batch: Tensor,
    boxes: Tensor,
    size: int | Sequence[int],
    mode: str = "bilinear",
    antialias: bool = True,
) -> Tensor:
    """Crop each image to its box (zero padding outside the frame) and resize the crop.

    Parameters
    ----------
    batch : Tensor
        (N, C, H, W) images or masks: uint8, bool or float, on any device.
    boxes : Tensor
        (N, 4) ``x0, y0, x1, y1`` in continuous pixel coordinates of ``batch``; rounded to the
        nearest pixel edge (:func:`fov_boxes` already returns integer boxes).
    size : int or (int, int)
        Output size ``S`` (square) or ``(height, width)``.
    mode : {"bilinear", "nearest"}
        ``"bilinear"`` for images (PIL's triangle filter when ``antialias``, i.e. averaging over the
        whole footprint of an output pixel when shrinking); ``"nearest"`` for label or lesion masks
        (nearest-exact sampling: output pixel centres take the value of the input pixel they fall in,
        as PIL's NEAREST).
    antialias : bool, optional
        Antialias when downscaling (default True). Ignored by ``"nearest"``.

    Returns
    -------
    Tensor
        (N, C, size, size) with the dtype and device of ``batch`` (uint8 results are rounded).

    Notes
    -----
    The crops have different sizes, so each is resized with its own filter footprint by one call
    to :func:`torch.nn.functional.interpolate`; the loop is over images, never over pixels, and its
    overhead is negligible next to the resampling (measured in ``bench/preprocess.py``).
    """
    _check_batch(batch)
    return _crop_list(list(batch.unbind(0)), boxes, size, mode, antialias)


def _crop_list(images: list[Tensor], boxes: Tensor, size: int | Sequence[int],
               mode: str = "bilinear", antialias: bool = True) -> Tensor:
    """:func:`crop_boxes` on a list of same-shape (C, H, W) tensors (no full-resolution stack)."""
    batch = images[0][None]
    if boxes.shape != (len(images), 4):
        raise ValueError(f"boxes must be (N, 4) with N={len(images)}, got {tuple(boxes.shape)}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    out_hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    n, (c, h, w) = len(images), images[0].shape
    ib = torch.round(boxes.detach().float()).to(torch.int64).cpu().tolist()
    out = torch.empty((n, c, *out_hw), dtype=batch.dtype, device=batch.device)
    for i, (x0, y0, x1, y1) in enumerate(ib):
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {i} is empty: {(x0, y0, x1, y1)}")
        xa, xb = min(max(x0, 0), w), min(max(x1, 0), w)
        ya, yb = min(max(y0, 0), h), min(max(y1, 0), h)
        if xb <= xa or yb <= ya:  # box entirely outside the frame
            out[i].zero_()
            continue
        crop = images[i][None, :, ya:yb, xa:xb]
        pad = (xa - x0, x1 - xb, ya - y0, y1 - yb)
        if any(pad):
            crop = F.pad(crop, pad, mode="constant", value=0)
        out[i] = _resize(crop, out_hw, mode, antialias)[0]
    return out


def _crop_circle_masks(circles: Tensor, boxes: Tensor, frame_hw: tuple[int, int],
                       size: int, bands: Tensor | None = None) -> Tensor:
    """FOV masks at crop resolution, drawn analytically: the circle mapped into each box, limited to
    the part of the box that lies inside the original frame (the zero padding is outside the FOV).
    """
    c, b = circles.float(), torch.round(boxes.float())
    sx = size / (b[:, 2] - b[:, 0])
    sy = size / (b[:, 3] - b[:, 1])
    dev = circles.device
    grid = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
    xs = grid.view(1, 1, 1, -1)
    ys = grid.view(1, 1, -1, 1)

    def col(t: Tensor) -> Tensor:
        return t.view(-1, 1, 1, 1)

    # Map output pixel centres back to input coordinates: exact for the anisotropic case too.
    xin = col(b[:, 0]) + xs / col(sx)
    yin = col(b[:, 1]) + ys / col(sy)
    h, w = frame_hw
    inside = (xin - col(c[:, 0])).square() + (yin - col(c[:, 1])).square() <= col(c[:, 2]).square()
    # Output pixels whose resampling footprint reaches into the zero padding are darkened by it:
    # keep only those at least half a footprint inside the frame.
    dx, dy = col(0.5 / sx.clamp(max=1.0)), col(0.5 / sy.clamp(max=1.0))
    in_frame = (xin >= dx) & (xin <= w - dx) & (yin >= dy) & (yin <= h - dy)
    if bands is not None:
        in_frame = in_frame & (yin >= col(bands[:, 0].float())) & (yin <= col(bands[:, 1].float()))
    return inside & in_frame


def crop_to_fov(
    batch: Tensor, mask: Tensor, size: int = 512, margin: float = 0.03
) -> tuple[Tensor, Tensor]:
    """Square crop centred on the FOV disk with a small margin, resized to ``size``.

    Parameters
    ----------
    batch : Tensor
        (N, 3, H, W) images, uint8 or float in [0, 1].
    mask : Tensor
        (N, 1, H, W) FOV masks (e.g. :func:`~medig.preprocess.fov_mask`); the circle is fitted to
        each with :func:`~medig.preprocess.fov_circles`.
    size : int, optional
        Output side (default 512).
    margin : float, optional
        Border around the disk as a fraction of its radius (default 0.03).

    Returns
    -------
    images : Tensor
        float32 (N, 3, size, size) in [0, 1]; zero where the box leaves the frame (a disk cut by the
        frame stays a centred, cut disk).
    masks : Tensor
        bool (N, 1, size, size): ``mask`` cropped with the same boxes (nearest).
    """
    _check_batch(batch)
    circles = fov_circles(mask)
    boxes = fov_boxes(circles, margin)
    images = crop_boxes(batch, boxes, size)
    images = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    masks = crop_boxes(mask.bool(), boxes, size, mode="nearest")
    return images, masks
