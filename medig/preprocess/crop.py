# SPDX-License-Identifier: Apache-2.0
"""Square crops around the field of view, with zero padding and PIL-matching antialiased resizing.

Boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates (see :mod:`medig.preprocess.field_of_view`).
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

from medig.preprocess.fov_detection import _check_batch, fov_circles

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


def _frame_box(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """(1, 4) the centred square box around a whole (h, w) frame (zero-padded on its short
    sides): the crop of a full-frame field of view."""
    side = max(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32, device=device)


def _field_boxes(circles: Tensor, full_frame: Tensor, h: int, w: int, margin: float) -> Tensor:
    """(N, 4) crop boxes of fields of view in (h, w) frames: the square around each circle
    (:func:`fov_boxes`), or the frame's square for a full-frame field (no black surround)."""
    return torch.where(full_frame[:, None], _frame_box(h, w, circles.device),
                       fov_boxes(circles, margin))


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
               mode: str = "bilinear", antialias: bool = True, out: Tensor | None = None,
               rows: Sequence[int] | None = None) -> Tensor:
    """:func:`crop_boxes` on a list of same-shape (C, H, W) tensors (no full-resolution stack).

    With ``out`` (float, (M, C, *size)), crop ``i`` is written to ``out[rows[i]]`` as float in
    [0, 1] (uint8 divided by 255, as ``crop_boxes(...).float() / 255``) and ``out`` is returned:
    no uint8 batch in between.
    """
    batch = images[0][None]
    if boxes.shape != (len(images), 4):
        raise ValueError(f"boxes must be (N, 4) with N={len(images)}, got {tuple(boxes.shape)}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    out_hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    n, (c, h, w) = len(images), images[0].shape
    ib = torch.round(boxes.detach().float()).to(torch.int64).cpu().tolist()
    if rows is None:
        rows = range(n)
    to_float = out is not None and batch.dtype != out.dtype
    if out is None:
        out = torch.empty((n, c, *out_hw), dtype=batch.dtype, device=batch.device)
    # CPU uint8 fast path: torch's antialiased uint8 kernel works on interleaved (channels-last)
    # pixels; decoders already give (C, H, W) views of (H, W, C) memory, so crops are taken as
    # views and zero padding is written into a channels-last buffer (F.pad would return planar
    # memory, which the kernel then repacks at 2-4x the cost of the resize itself).
    fast = (mode == "bilinear" and batch.dtype == torch.uint8 and batch.device.type == "cpu"
            and c <= 4)
    scratch = None  # one padding buffer for the whole loop: fresh pages per image cost ~1 ms
    if fast:
        padded = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in ib
                  if x0 < 0 or y0 < 0 or x1 > w or y1 > h]
        if padded:
            scratch = torch.empty(max(padded) * c, dtype=batch.dtype)
    for i, (x0, y0, x1, y1) in enumerate(ib):
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {i} is empty: {(x0, y0, x1, y1)}")
        xa, xb = min(max(x0, 0), w), min(max(x1, 0), w)
        ya, yb = min(max(y0, 0), h), min(max(y1, 0), h)
        row = out[rows[i]]
        if xb <= xa or yb <= ya:  # box entirely outside the frame
            row.zero_()
            continue
        crop = images[i][None, :, ya:yb, xa:xb]
        pad = (xa - x0, x1 - xb, ya - y0, y1 - yb)
        if fast:
            if any(pad):
                assert scratch is not None  # allocated for the padded boxes
                bh, bw = y1 - y0, x1 - x0
                buf = scratch[: bh * bw * c].view(1, bh, bw, c).permute(0, 3, 1, 2)
                buf[:, :, : pad[2]].zero_()
                buf[:, :, buf.shape[2] - pad[3]:].zero_()
                buf[:, :, pad[2]: buf.shape[2] - pad[3], : pad[0]].zero_()
                buf[:, :, pad[2]: buf.shape[2] - pad[3], buf.shape[3] - pad[1]:].zero_()
                buf[:, :, pad[2]: buf.shape[2] - pad[3], pad[0]: buf.shape[3] - pad[1]] = crop
                crop = buf
            elif crop.stride(1) != 1 and c > 1:  # planar memory: repack once, small crop first
                crop = crop.contiguous(memory_format=torch.channels_last)
        elif any(pad):
            crop = F.pad(crop, pad, mode="constant", value=0)
        res = _resize(crop, out_hw, mode, antialias)[0]
        row.copy_(res)
        if to_float:
            row.div_(255.0)
    return out


def _crop_circle_masks(circles: Tensor, boxes: Tensor, frame_hw: tuple[int, int],
                       size: int, bands: Tensor | None = None) -> Tensor:
    """FOV masks at crop resolution, drawn analytically: the circle mapped into each box, limited to
    the part of the box that lies inside the original frame (the zero padding is outside the FOV).

    Separable: per image, squared x distances of the output columns and squared y distances of
    the output rows (infinite outside the frame / band), one broadcast add and compare.
    """
    c, b = circles.float(), torch.round(boxes.float())
    sx = size / (b[:, 2] - b[:, 0])
    sy = size / (b[:, 3] - b[:, 1])
    dev = circles.device
    grid = torch.arange(size, device=dev, dtype=torch.float32) + 0.5

    def col(t: Tensor) -> Tensor:
        return t.view(-1, 1)

    # Map output pixel centres back to input coordinates: exact for the anisotropic case too.
    xin = col(b[:, 0]) + grid / col(sx)  # (N, size)
    yin = col(b[:, 1]) + grid / col(sy)
    h, w = frame_hw
    # Output pixels whose resampling footprint reaches into the zero padding are darkened by it:
    # keep only those at least half a footprint inside the frame.
    dx, dy = col(0.5 / sx.clamp(max=1.0)), col(0.5 / sy.clamp(max=1.0))
    x_ok = (xin >= dx) & (xin <= w - dx)
    y_ok = (yin >= dy) & (yin <= h - dy)
    if bands is not None:
        y_ok = y_ok & (yin >= col(bands[:, 0].float())) & (yin <= col(bands[:, 1].float()))
    inf = torch.tensor(torch.inf, device=dev)
    dx2 = torch.where(x_ok, (xin - col(c[:, 0])).square(), inf)[:, None, None, :]
    dy2 = torch.where(y_ok, (yin - col(c[:, 1])).square(), inf)[:, None, :, None]
    r2 = c[:, 2].square().view(-1, 1, 1, 1)
    n = c.shape[0]
    out = torch.empty((n, 1, size, size), dtype=torch.bool, device=dev)
    step = max(1, (1 << 20) // (size * size))  # float temporaries of ~4 MB, reused, not n x 1 MB
    for i in range(0, n, step):
        j = min(n, i + step)
        torch.le(dy2[i:j] + dx2[i:j], r2[i:j], out=out[i:j])
    return out


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
