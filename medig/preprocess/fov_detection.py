# SPDX-License-Identifier: Apache-2.0
"""Field of view (FOV) detection in fundus photographs: find the retina disk, fit it as a circle.

:func:`detect_fov` returns a :class:`~medig.preprocess.field_of_view.FieldOfView` (circles,
visible rows and kind of each image's field); :func:`detect_fov_circles`, :func:`fov_mask` and
:func:`fov_circles` are its shortcuts. Circles are in continuous pixel coordinates (see
:mod:`medig.preprocess.field_of_view`).

Why a circle fit and not connected components
--------------------------------------------
Cameras image the retina through a circular aperture; the FOV *is* a circle (possibly cut by the top
and bottom of the sensor). Fitting that circle is batched, sub-pixel, and fixes in one go the things
that break a thresholded mask: notches, dark lesions or a dark macula inside the disk (holes), text or
scale bars burned into the corners (extra blobs), and the vignetted, noisy rim.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medig.preprocess.field_of_view import FieldOfView, disc_checks

__all__ = ["WORK_SIZE", "detect_fov", "detect_fov_circles", "fov_circles", "fov_mask"]


#: Longest side of the working resolution for detection. A 3% radius tolerance is ~4 px at this
#: size and the fit is sub-pixel, so higher resolutions only cost time.
WORK_SIZE = 256

# Threshold rule constants (see :func:`detect_fov_circles`).
_BG_QUANTILE = 0.02
_HI_QUANTILE = 0.99
_COARSE_FRACTION = 0.1
_THRESHOLD_FRACTION = 0.25
_MIN_CONTRAST = 6.0 / 255.0  # disk must stand this far above the background, else no FOV
_MIN_POINTS = 12  # boundary points needed for a fit; fewer -> fallback circle
_FIT_ITERATIONS = 6
_APERTURE_FRACTION = 0.06  # aperture threshold: this far above the background, plus ...
_APERTURE_SLACK = 4.0  # ... a few levels of sensor/JPEG noise on the black surround
_APERTURE_WIDER = 1.1  # the aperture replaces the disk when its radius is this much larger
_APERTURE_AREA = 1.05  # ... which needs a dim area at least this much larger (else: no second fit)
_BLANK_LEVEL = 16.0  # 99th percentile below this (of 255): nothing visible, no field of view


def _as_float01(batch: Tensor) -> Tensor:
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    if batch.dtype == torch.bool:
        return batch.float()
    return batch.float()


def _check_batch(batch: Tensor, name: str = "batch") -> None:
    if not isinstance(batch, Tensor) or batch.ndim != 4:
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"{name} must be a 4-D tensor (N, C, H, W), got {shape}")
    if batch.shape[0] == 0:
        raise ValueError(f"{name} is empty (N == 0)")


def _work_shape(h: int, w: int, work_size: int) -> tuple[int, int]:
    scale = min(1.0, work_size / max(h, w))
    return max(8, round(h * scale)), max(8, round(w * scale))


def _downsample(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """Antialiased (area-like) downsampling; keeps uint8 on CPU where torch has a fast kernel."""
    if tuple(x.shape[-2:]) == shape:
        return _as_float01(x)
    if x.dtype == torch.uint8 and x.device.type == "cpu" and x.shape[1] in (1, 3, 4):
        y = F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)
        return y.float().div_(255.0)
    return F.interpolate(_as_float01(x), size=shape, mode="bilinear", antialias=True,
                         align_corners=False)


def _stride(h: int, w: int, work_size: int) -> int:
    """Subsampling stride for detection; 1 means 'resample to the working size instead'."""
    k = max(h, w) // work_size
    return k if k >= 2 else 1


def _to_levels(v: Tensor) -> Tensor:
    """Float [0, 1] -> uint8 levels 0-255 (uint8 passes through)."""
    if v.dtype == torch.uint8:
        return v
    return v.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _small_intensity(x: Tensor, work_size: int) -> tuple[Tensor, tuple[float, float, float, float]]:
    """Channel maximum of a small copy of ``x`` (N, C, H, W) as uint8 levels (N, h, w), and the map
    ``(sx, sy, ox, oy)`` from its continuous pixel coordinates to those of ``x``: ``X = x sx + ox``.

    Images at least twice the working size are *subsampled* with an integer stride ``k`` (one
    pixel per k x k cell, at its centre): a view, no resampling, ~10x cheaper than an antialiased
    resize of the full-resolution image. A thresholded sample at small column ``j`` says the edge
    lies between the centres of samples ``j - 1`` and ``j``, so the edge ``j`` maps to the midpoint
    ``o + j k + 0.5 - k / 2`` of those centres (``o`` = offset of the first sample). The fit uses
    hundreds of such edges, so its error stays far below a working pixel; the detection tolerances
    (2% centre, 3% radius) are ~15-20 full-resolution pixels at 1500 px. Smaller images are
    resampled with the antialiased bilinear filter to the working size, as before.
    """
    h, w = x.shape[-2:]
    k = _stride(h, w, work_size)
    if k > 1:
        o = k // 2
        small = _to_levels(x[:, :, o::k, o::k].amax(dim=1))
        off = o + 0.5 - k / 2
        return small, (float(k), float(k), off, off)
    shape = _work_shape(h, w, work_size)
    if tuple(x.shape[-2:]) == shape:
        small = x
    elif x.dtype == torch.uint8 and x.device.type == "cpu" and x.shape[1] in (1, 3, 4):
        small = F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)
    else:
        small = F.interpolate(_as_float01(x), size=shape, mode="bilinear", antialias=True,
                              align_corners=False)
    return _to_levels(small.amax(dim=1)), (w / shape[1], h / shape[0], 0.0, 0.0)


def _quantile_hist(hist: Tensor, q: float) -> Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) of integer values 0..B-1 given per row
    as a histogram ``hist`` (N, B) of counts; rows with no values give NaN."""
    cdf = hist.cumsum(dim=1)
    total = cdf[:, -1:]
    pos = q * (total - 1).clamp(min=0).double()
    lo = pos.floor().long()
    hi = pos.ceil().long()
    # sorted[k] = smallest level whose cumulative count exceeds k.
    idx = torch.searchsorted(cdf, torch.cat([lo, hi], dim=1), right=True)
    idx = idx.clamp(max=hist.shape[1] - 1).double()
    frac = pos - lo.double()
    val = idx[:, :1] + frac * (idx[:, 1:] - idx[:, :1])
    return torch.where(total > 0, val, torch.nan)[:, 0]


def _opening3(binary: Tensor) -> Tensor:
    """3 x 3 morphological opening of (N, h, w) bool, as separable shifts (10x faster than
    ``max_pool2d`` on CPU). Like pooling with implicit padding, pixels outside the frame are ignored:
    the erosion does not eat the frame border."""

    def erode(b: Tensor, dim: int) -> Tensor:
        out = b.clone()
        n = b.shape[dim]
        out.narrow(dim, 1, n - 1).logical_and_(b.narrow(dim, 0, n - 1))
        out.narrow(dim, 0, n - 1).logical_and_(b.narrow(dim, 1, n - 1))
        return out

    def dilate(b: Tensor, dim: int) -> Tensor:
        out = b.clone()
        n = b.shape[dim]
        out.narrow(dim, 1, n - 1).logical_or_(b.narrow(dim, 0, n - 1))
        out.narrow(dim, 0, n - 1).logical_or_(b.narrow(dim, 1, n - 1))
        return out

    if binary.shape[1] < 2 or binary.shape[2] < 2:
        return binary.clone()
    return dilate(dilate(erode(erode(binary, 1), 2), 1), 2)


def _histograms(v8: Tensor) -> Tensor:
    """Per-image 256-bin histograms (N, 256) of uint8 levels (N, h, w), one batched count."""
    n = v8.shape[0]
    flat = v8.reshape(n, -1)
    if v8.device.type == "cpu":  # a loop of uint8 bincounts beats the int64 offset trick 20x
        return torch.stack([torch.bincount(r, minlength=256) for r in flat])
    rows = torch.arange(n, device=v8.device)[:, None] * 256
    return torch.bincount((flat.long() + rows).reshape(-1), minlength=256 * n).view(n, 256)


def _disk_levels(hist: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Background ``bg``, disk ``fg`` and 99th-percentile ``hi`` levels (N,) from histograms."""
    bg = _quantile_hist(hist, _BG_QUANTILE)
    hi = _quantile_hist(hist, _HI_QUANTILE)
    levels = torch.arange(256, device=hist.device, dtype=torch.float64)
    coarse = levels[None] > (bg + _COARSE_FRACTION * (hi - bg))[:, None]
    fg = _quantile_hist(torch.where(coarse, hist, 0), 0.5)
    return bg, torch.nan_to_num(fg, nan=0.0), hi


def _binary_above(v8: Tensor, thr: Tensor) -> Tensor:
    """``v8 > thr`` per image (thr (N,) float levels), then a 3 x 3 opening."""
    # v > thr for integer v  <=>  v >= floor(thr) + 1
    return _opening3(v8 >= (thr.floor() + 1).clamp(0, 256).to(torch.int16)[:, None, None])


def _boundary_points(binary: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Outer-envelope boundary points of ``binary`` (N, h, w).

    Per row the leftmost and rightmost foreground pixel, per column the topmost and bottommost: the
    outer envelope only, so holes (lesions, dark macula) never produce points. Points on the frame
    border (where the disk is cut by the frame) are invalid: the circle continues outside the image.
    Returns x, y (pixel-edge coordinates, N x P) and a validity mask (N x P).
    """
    n, h, w = binary.shape
    dev = binary.device
    # First/last foreground index as max-reductions of index-weighted masks (vectorised, unlike
    # argmax on uint8): max(b * (w - j)) = w - first j, max(b * (j + 1)) = last j + 1. Empty rows
    # and columns get 0 and the last index, as argmax gave.
    b16 = binary.to(torch.int16)
    jr = torch.arange(w, device=dev, dtype=torch.int16)
    ir = torch.arange(h, device=dev, dtype=torch.int16)[:, None]
    first_c = (b16 * (w - jr)).amax(dim=2)  # (N, h): w - left, 0 if empty
    last_c = (b16 * (jr + 1)).amax(dim=2)  # right + 1
    first_r = (b16 * (h - ir)).amax(dim=1)  # (N, w): h - top
    last_r = (b16 * (ir + 1)).amax(dim=1)  # bottom + 1
    row_any, col_any = first_c > 0, first_r > 0
    left = torch.where(row_any, w - first_c, 0).long()
    right = torch.where(row_any, last_c - 1, w - 1).long()
    top = torch.where(col_any, h - first_r, 0).long()
    bottom = torch.where(col_any, last_r - 1, h - 1).long()
    ys = torch.arange(h, device=dev, dtype=torch.float32).expand(n, h) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32).expand(n, w) + 0.5
    px = torch.cat([left.float(), right.float() + 1.0, xs, xs], dim=1)
    py = torch.cat([ys, ys, top.float(), bottom.float() + 1.0], dim=1)
    valid = torch.cat([row_any & (left > 0), row_any & (right < w - 1),
                       col_any & (top > 0), col_any & (bottom < h - 1)], dim=1)
    return px, py, valid


def _kasa_fit(x: Tensor, y: Tensor, wt: Tensor) -> Tensor:
    """Weighted algebraic circle fit (Kasa), batched. Inputs (N, P) float64; returns (N, 3)."""
    a = torch.stack([x, y, torch.ones_like(x)], dim=2)  # (N, P, 3)
    b = -(x * x + y * y)
    aw = a * wt[..., None]
    ata = aw.transpose(1, 2) @ a + 1e-9 * torch.eye(3, dtype=a.dtype, device=a.device)
    atb = (aw * b[..., None]).sum(dim=1)
    d, e, f = torch.linalg.solve(ata, atb).unbind(dim=1)
    cx, cy = -d / 2, -e / 2
    r = torch.sqrt(torch.clamp(cx * cx + cy * cy - f, min=0.0))
    return torch.stack([cx, cy, r], dim=1)


def _robust_circle_fit(px: Tensor, py: Tensor, valid: Tensor, primary: Tensor,
                       min_tol: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Kasa fit with iterative trimming of points far from the current circle.

    ``primary`` (P,) marks the points trusted for the first fit. Outliers are text/label blobs
    (points outside the disk) and notches or rim defects (inside).
    Each iteration keeps points whose geometric residual is below ``max(min_tol, 3 * 1.4826 * MAD)``
    (``min_tol`` ~ one working-resolution pixel, in the units of the points).
    Returns circles (N, 3) in the coordinates of the points, an 'ok' flag (N,) and the inliers.
    """
    x, y = px.double(), py.double()
    # Centre and scale for a well-conditioned solve.
    ox, oy = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    s = torch.clamp(torch.maximum(x.amax(1, keepdim=True), y.amax(1, keepdim=True)), min=1.0)
    xn, yn = (x - ox) / s, (y - oy) / s
    # Start from the row extents only: a horizontal camera-mask cut (the common way a disk is cut)
    # puts whole runs of column extents on a straight line, but never corrupts a row's chord ends.
    # Column extents join in later iterations where they agree with the circle (they pin the apex).
    keep = valid & primary
    circ = _kasa_fit(xn, yn, keep.double())
    for _ in range(_FIT_ITERATIONS):
        res = torch.abs(torch.hypot(xn - circ[:, :1], yn - circ[:, 1:2]) - circ[:, 2:3])
        mad = torch.nanquantile(torch.where(keep, res, torch.nan), 0.5, dim=1, keepdim=True)
        mad = torch.nan_to_num(mad, nan=0.0)
        tol = torch.maximum(3.0 * 1.4826 * mad, min_tol / s)
        keep = valid & (res <= tol)
        circ = _kasa_fit(xn, yn, keep.double())
    ok = keep.sum(dim=1) >= _MIN_POINTS
    out = torch.stack([circ[:, 0] * s[:, 0] + ox[:, 0], circ[:, 1] * s[:, 0] + oy[:, 0],
                       circ[:, 2] * s[:, 0]], dim=1)
    ok = ok & torch.isfinite(out).all(dim=1) & (out[:, 2] > 0)
    return out.float(), ok, keep


def _fit_binary(binary: Tensor, full_hw: tuple[int, int],
                has_disk: Tensor | None = None,
                grid: tuple[float, float, float, float] | None = None,
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Circles (N, 3) and visible row bands (N, 2) in full-resolution coordinates.

    The band ``[y_top, y_bottom]`` is where the disk is visible: the circle's own vertical extent,
    unless a camera mask cuts it with black rows inside the frame (the first/last inlier chord lies
    clearly -- more than 3% of the radius -- inside the circle). ``grid`` is ``(sx, sy, ox, oy)``,
    the map ``X = x sx + ox`` from ``binary``'s coordinates to full resolution (default: ``binary``
    covers the full frame, ``sx = W / w``, no offset). Also returns whether each fit
    succeeded (else the circle is the fallback).
    """
    n, h, w = binary.shape
    big_h, big_w = full_hw
    sx, sy, ox, oy = grid if grid is not None else (big_w / w, big_h / h, 0.0, 0.0)
    px, py, valid = _boundary_points(binary)
    primary = torch.arange(px.shape[1], device=px.device) < 2 * h  # the row extents
    # Scale points (not the fitted radius) so a non-square working grid stays exact.
    px, py = px * sx + ox, py * sy + oy
    circles, ok, keep = _robust_circle_fit(px, py, valid, primary, min_tol=1.5 * max(sx, sy))
    if has_disk is not None:
        ok = ok & has_disk
    fallback = torch.tensor([big_w / 2, big_h / 2, max(big_w, big_h) / 2],
                            dtype=circles.dtype, device=circles.device)
    circles = torch.where(ok[:, None], circles, fallback.expand(n, 3))
    rows = keep & primary
    yk = py
    y_first = torch.where(rows, yk, torch.inf).amin(dim=1) - 0.5 * sy
    y_last = torch.where(rows, yk, -torch.inf).amax(dim=1) + 0.5 * sy
    top, bottom = circles[:, 1] - circles[:, 2], circles[:, 1] + circles[:, 2]
    slack = 0.03 * circles[:, 2]
    top = torch.where(ok & (y_first > top + slack), y_first, top)
    bottom = torch.where(ok & (y_last < bottom - slack), y_last, bottom)
    return circles, torch.stack([top, bottom], dim=1), ok


def _detect(batch: Tensor | list[Tensor], work_size: int) -> FieldOfView:
    """The field of view of a batch, or of a list of same-shape (3, H, W) images: a list is
    reduced image by image, so the full-resolution images are never stacked (a copy that costs
    more than the detection itself)."""
    if isinstance(batch, Tensor):
        _check_batch(batch)
        h, w = batch.shape[-2:]
        small, grid = _small_intensity(batch, work_size)
    else:
        h, w = batch[0].shape[-2:]
        parts = [_small_intensity(t[None], work_size) for t in batch]
        small, grid = torch.cat([p[0] for p in parts]), parts[0][1]
    v8 = _to_levels(small)
    bg, fg, hi = _disk_levels(_histograms(v8))
    binary = _binary_above(v8, bg + _THRESHOLD_FRACTION * (fg - bg))
    has_disk = (fg - bg) > _MIN_CONTRAST * 255.0
    circles, bands, ok = _fit_binary(binary, (h, w), has_disk, grid)
    disc, cut = _checks(v8, binary, circles, bands, grid, bg, fg)
    disc = disc & ok
    # The aperture may be larger than the well-lit disk: a small pupil or strong vignetting
    # leaves the periphery of the field dim but not black. A second fit just above the black
    # level finds that aperture; it replaces the disk when it is a valid field of view too and
    # clearly larger (a sharp aperture edge gives the same circle at both levels).
    dim = _binary_above(v8, bg + _APERTURE_FRACTION * (fg - bg) + _APERTURE_SLACK)
    # Only where the dim area is clearly larger than the disk's can the aperture be wider: the
    # second fit runs on those images alone (most photographs have a sharp aperture edge).
    area, dim_area = binary.flatten(1).sum(1), dim.flatten(1).sum(1)
    need = (dim_area > _APERTURE_AREA * area).nonzero().flatten()
    if len(need):
        sel = (v8[need], dim[need], has_disk[need], bg[need], fg[need])
        a_circles, a_bands, a_ok = _fit_binary(sel[1], (h, w), sel[2], grid)
        a_disc, a_cut = _checks(sel[0], sel[1], a_circles, a_bands, grid, sel[3], sel[4])
        wider = a_ok & a_disc & (~disc[need]
                                 | (a_circles[:, 2] > _APERTURE_WIDER * circles[need, 2]))
        circles[need] = torch.where(wider[:, None], a_circles, circles[need])
        bands[need] = torch.where(wider[:, None], a_bands, bands[need])
        cut[need] = torch.where(wider, a_cut, cut[need])
        disc[need] = disc[need] | wider
    blank = hi < _BLANK_LEVEL
    shape = torch.where(disc, torch.where(cut, 2, 1), torch.where(blank, 0, 3))
    # A full-frame photograph: the field of view is the frame (a circle through its corners).
    full = (shape == 3)[:, None]
    frame_circle = torch.tensor([w / 2, h / 2, math.hypot(w, h) / 2], dtype=circles.dtype,
                                device=circles.device)
    fallback = torch.tensor([w / 2, h / 2, max(w, h) / 2], dtype=circles.dtype,
                            device=circles.device)
    circles = torch.where(full, frame_circle, torch.where((shape == 0)[:, None], fallback,
                                                          circles))
    frame_band = torch.tensor([0.0, float(h)], dtype=bands.dtype, device=bands.device)
    bands = torch.where(full, frame_band, bands)
    sizes = torch.tensor([[h, w]], device=circles.device).expand(len(circles), 2)
    return FieldOfView(circles, bands, shape.long(), sizes)


def _checks(v8: Tensor, binary: Tensor, circles: Tensor, bands: Tensor,
            grid: tuple[float, float, float, float], bg: Tensor, fg: Tensor
            ) -> tuple[Tensor, Tensor]:
    """:func:`disc_checks` of full-resolution circles, on the small copy they were fitted on."""
    sx, sy, ox, oy = grid
    small = torch.stack([(circles[:, 0] - ox) / sx, (circles[:, 1] - oy) / sy,
                         circles[:, 2] / (0.5 * (sx + sy))], dim=1)
    return disc_checks(v8, binary, small, (bands - oy) / sy, bg, fg)


def detect_fov(images: Tensor | Sequence[Tensor], work_size: int = WORK_SIZE) -> FieldOfView:
    """Detect the field of view of each fundus image, and say what kind it is.

    The circle comes from :func:`detect_fov_circles`'s threshold and fit; it is then checked as a
    camera aperture (:func:`~medig.preprocess.field_of_view.disc_checks`): the frame outside it
    must be black and featureless (burned-in text allowed), the retina inside it lit. Kinds
    (:data:`~medig.preprocess.field_of_view.FOV_SHAPES`):

    - ``"circle"``: a disk on a black surround, wholly inside the frame;
    - ``"cut"``: a disk cut by the frame edges or by black camera-mask rows;
    - ``"full_frame"``: no black surround (a camera crop, or not a fundus photograph at all): the
      field of view is the whole frame, never a disk invented inside it -- including an
      over-exposed white frame;
    - ``"none"``: nothing is visible (99% of the frame below 16 of 255 grey levels).

    Parameters
    ----------
    images : Tensor or sequence of Tensor
        (N, 3, H, W) or a list of (3, H, W) images of any sizes, uint8 or float in [0, 1].
    work_size : int, optional
        Longest side of the working resolution (default 256).

    Returns
    -------
    FieldOfView
    """
    if isinstance(images, Tensor):
        return _detect(images, work_size)
    items = list(images)
    if not items:
        raise ValueError("no images given")
    groups: dict[tuple[int, int], list[int]] = {}
    for k, t in enumerate(items):
        groups.setdefault((t.shape[-2], t.shape[-1]), []).append(k)
    parts: dict[int, FieldOfView] = {}  # every image is in one group
    for idx in groups.values():
        fov = _detect([items[k] for k in idx], work_size)
        for j, k in enumerate(idx):
            parts[k] = fov[j:j + 1]
    return FieldOfView.cat([parts[k] for k in range(len(items))])


def detect_fov_circles(batch: Tensor, work_size: int = WORK_SIZE) -> Tensor:
    """Detect the field-of-view circle of each fundus image.

    Threshold rule (all per image, on the channel maximum ``v = max(R, G, B)`` of a small copy --
    subsampled with the integer stride ``max(H, W) // work_size`` when that is >= 2, else an
    antialiased resize to longest side ``work_size`` -- in 0-255 levels; the channel maximum is the
    red channel on normal fundi and still works on green-dominant or grey images):

    - background level ``bg`` = 2nd percentile of ``v``; ``hi`` = 99th percentile (exact
      quantiles of the levels, from 256-bin histograms);
    - disk brightness ``fg`` = median of ``v`` over pixels above ``bg + 0.1 (hi - bg)`` (robust to a
      bright optic disc and small bright text, and scales with a dark or low-contrast fundus);
    - disk = ``v > bg + 0.25 (fg - bg)``, then a 3 x 3 morphological opening (speckle, thin text).

    The circle is then fitted (algebraic least squares with iterative outlier trimming) to the
    *outer envelope* of the thresholded area -- leftmost/rightmost pixel of each row and
    topmost/bottommost of each column -- excluding points on the frame border. A disk cut by the
    top and bottom of the frame is therefore fitted from its left/right arcs and the chord ends, and
    its centre and radius stay right; holes (lesions) never contribute points; corner text and
    notches are rejected as outliers.

    The circle is then checked as a camera aperture (:func:`detect_fov`). A photograph without a
    black surround (a camera crop, a disk filling the frame, a white frame, a scene) gets the
    circle through the frame's corners, ``(W/2, H/2, hypot(W, H)/2)``: its field of view is the
    whole frame, never a disk invented inside it. An image with nothing visible (an all-black
    frame) gets the fallback circle centred on the frame with radius ``max(H, W) / 2``.

    Parameters
    ----------
    batch : Tensor
        Images (N, 3, H, W), uint8 or float in [0, 1], any device.
    work_size : int, optional
        Longest side of the working resolution (default 256).

    Returns
    -------
    Tensor
        float32 (N, 3): ``cx, cy, r`` in continuous pixel coordinates of ``batch`` (see
        :mod:`medig.preprocess.field_of_view`).
    """
    return _detect(batch, work_size).circles


def fov_mask(batch: Tensor, work_size: int = WORK_SIZE) -> Tensor:
    """Field-of-view mask (the retina disk) of each fundus image.

    The mask is the fitted FOV circle (:func:`detect_fov_circles`) intersected with the frame, so it
    has no holes at dark lesions, no notch, and excludes text burned into the corners. Where a
    camera mask cuts the disk with black rows *inside* the frame, those rows are excluded too.

    Parameters
    ----------
    batch : Tensor
        Images (N, 3, H, W), uint8 or float in [0, 1], on any device.
    work_size : int, optional
        Longest side of the working resolution used for detection (default 256).

    Returns
    -------
    Tensor
        bool (N, 1, H, W) on the device of ``batch``.

    Examples
    --------
    >>> import torch
    >>> yy, xx = torch.meshgrid(torch.arange(200), torch.arange(300), indexing="ij")
    >>> disk = ((xx + 0.5 - 150) ** 2 + (yy + 0.5 - 100) ** 2 <= 90 ** 2)
    >>> img = (disk * 180).to(torch.uint8).expand(1, 3, 200, 300)
    >>> fov_mask(img).shape
    torch.Size([1, 1, 200, 300])
    """
    return _detect(batch, work_size).mask()


def fov_circles(mask: Tensor, work_size: int = 512) -> Tensor:
    """Fit the FOV circle of each mask (e.g. from :func:`fov_mask` or a user-supplied FOV mask).

    Uses the same outer-envelope robust circle fit as :func:`detect_fov_circles`, so a mask with a
    notch, holes or a stray blob still gives the circle. A mask cut by the frame gives the full
    circle (centre possibly outside the top/bottom rows).

    Parameters
    ----------
    mask : Tensor
        (N, 1, H, W) or (N, H, W), bool or float (> 0.5 is inside).
    work_size : int, optional
        Masks larger than this (longest side) are fitted on an antialiased copy (default 512).

    Returns
    -------
    Tensor
        float32 (N, 3) ``cx, cy, r`` in continuous pixel coordinates of ``mask``. An empty mask
        gives the fallback circle ``(W/2, H/2, max(H, W)/2)``.
    """
    if isinstance(mask, Tensor) and mask.ndim == 3:
        mask = mask[:, None]
    _check_batch(mask, "mask")
    h, w = mask.shape[-2:]
    small = _downsample(mask.float(), _work_shape(h, w, work_size))
    binary = small[:, 0] > 0.5
    return _fit_binary(binary, (h, w), binary.flatten(1).any(dim=1))[0]
