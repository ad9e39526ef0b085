# SPDX-License-Identifier: Apache-2.0
"""Anatomy of fundus photographs, batched in torch on the images' device: the optic disc, the
fovea, the vessel tree, and the regions of the frame an audit names evidence by.

:func:`find_anatomy` takes images and their field-of-view (FOV) masks and returns an
:class:`Anatomy`; :meth:`Anatomy.regions` rasterises it into named, disjoint region masks
(:data:`REGIONS`). Each structure has a confidence in ``[0, 1]``; ``0`` means "not found", a valid
answer (a photograph without a visible disc, a frame that is not a fundus photograph).

How
---
Everything runs on a working copy whose FOV radius is about :data:`WORK_RADIUS` pixels, in units
of the FOV radius ``R`` (from the mask's column extent: camera masks cut the disk at the top and
bottom, never at the sides).

- **Optic disc**: the brightest compact blob. The grey level is divided by its heavily blurred
  self (vignetting and uneven illumination out), closed morphologically (vessels crossing the
  disc out), averaged over a disc-sized window; the maximum inside the FOV (away from the rim) is
  the centre, refined as the brightness-weighted centroid of the blob's bright pixels, whose
  area gives the radius. Confidence: how far the peak stands above the FOV's spread.
- **Fovea**: the darkest smooth region (vessels and the foveal reflex removed morphologically)
  within one disc diameter of the point 2.5 disc diameters from the disc towards the FOV centre
  (temporal); confidence from its depth below the sector's
  median. Not searched without a disc.
- **Vessels**: the black top-hat of the green channel (closing minus image), relative to the
  closing, thresholded at :data:`VESSEL_CONTRAST`; "found" when they cover at least
  :data:`MIN_VESSEL_SHARE` of the FOV.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MIN_VESSEL_SHARE", "REGIONS", "VESSEL_CONTRAST", "Anatomy", "find_anatomy"]

#: The regions of :meth:`Anatomy.regions`, disjoint and covering the frame, in the order a pixel
#: is assigned (the first that holds it): optic disc, macula (a disc of one disc diameter around
#: the fovea), vessels, the FOV's rim band, the rest of the retina, the frame's corners and the
#: rest outside the FOV.
REGIONS = ("optic_disc", "macula", "vessels", "fov_rim", "retina", "frame_corners",
           "outside_fov")

#: FOV radius of the working copy, in pixels.
WORK_RADIUS = 64.0
#: Expected optic-disc radius as a share of the FOV radius (45-degree cameras: 0.08-0.14).
DISC_SHARE = 0.11
#: The disc centre is searched this far inside the FOV (share of R): the rim is vignetted.
DISC_SEARCH = 0.85
#: Width (Gaussian sigma, in expected disc radii) of the window the brightness is averaged over.
DISC_WINDOW = 0.6
#: Relative darkness (top-hat / closing) above which a pixel is on a vessel.
VESSEL_CONTRAST = 0.07
#: Vessels "found" when they cover at least this share of the FOV.
MIN_VESSEL_SHARE = 0.01
#: Disc confidence: peak z-score (over the FOV) mapped linearly from these two values to 0 and 1.
DISC_Z = (1.0, 2.5)
#: ... times the peak's excess over the median (relative brightness) mapped likewise.
DISC_CONTRAST = (0.08, 0.2)
#: Fovea confidence: depth below the search sector's median, in units of its spread, likewise.
FOVEA_Z = (0.5, 2.0)
#: Expected distance of the fovea from the disc centre, in disc diameters ...
FOVEA_DISTANCE = 2.5
#: ... and the radius of the window it is searched in around that point, likewise.
FOVEA_WINDOW = 1.0
#: Penalty (in units of the window's spread of darkness) at the window's edge.
FOVEA_PULL = 0.5
#: Width of the rim band, as a share of the FOV radius.
RIM_SHARE = 0.08
#: Frame corners: squares of this share of the frame's shorter side.
CORNER_SHARE = 0.2


@dataclass(frozen=True)
class Anatomy:
    """Where the structures of each image are, in its continuous pixel coordinates.

    Attributes
    ----------
    disc : Tensor
        float32 (N, 3) ``cx, cy, r`` of the optic disc (NaN where not found).
    disc_confidence : Tensor
        float32 (N,) in [0, 1]; 0: not found.
    fovea : Tensor
        float32 (N, 2) ``cx, cy`` of the fovea (NaN where not found).
    fovea_confidence : Tensor
        float32 (N,) in [0, 1]; 0: not found.
    vessels : Tensor
        bool (N, 1, H, W) vessel mask.
    vessel_confidence : Tensor
        float32 (N,) in [0, 1]: the vessels' share of the FOV against :data:`MIN_VESSEL_SHARE`.
    fov : Tensor
        bool (N, 1, H, W) the field of view it was found in.
    """

    disc: Tensor
    disc_confidence: Tensor
    fovea: Tensor
    fovea_confidence: Tensor
    vessels: Tensor
    vessel_confidence: Tensor
    fov: Tensor

    def regions(self) -> dict[str, Tensor]:
        """Disjoint bool (N, 1, H, W) masks named by :data:`REGIONS` (empty where not found)."""
        n, _, h, w = self.fov.shape
        dev = self.fov.device
        ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, 1, -1, 1) + 0.5
        xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, 1, -1) + 0.5
        fov = self.fov.bool()
        d = self.disc.view(n, 3, 1, 1)
        disc = ((xs - d[:, 0:1]) ** 2 + (ys - d[:, 1:2]) ** 2 <= d[:, 2:3] ** 2) & fov
        f = self.fovea.view(n, 2, 1, 1)
        macula = ((xs - f[:, 0:1]) ** 2 + (ys - f[:, 1:2]) ** 2 <= (2 * d[:, 2:3]) ** 2) & fov
        macula &= ~disc  # NaN comparisons are False: nothing where not found
        vessels = self.vessels & fov & ~disc & ~macula
        cx, cy, r = _fov_circle(fov)
        rel = torch.sqrt((xs - cx.view(-1, 1, 1, 1)) ** 2 + (ys - cy.view(-1, 1, 1, 1)) ** 2)
        rim = (rel >= (1 - RIM_SHARE) * r.view(-1, 1, 1, 1)) & fov & ~disc & ~macula & ~vessels
        retina = fov & ~disc & ~macula & ~vessels & ~rim
        k = CORNER_SHARE * min(h, w)
        near_x = (xs < k) | (xs > w - k)
        near_y = (ys < k) | (ys > h - k)
        corners = (near_x & near_y) & ~fov
        outside = ~fov & ~corners
        return {"optic_disc": disc, "macula": macula, "vessels": vessels, "fov_rim": rim,
                "retina": retina, "frame_corners": corners.expand_as(fov),
                "outside_fov": outside.expand_as(fov)}


def _fov_circle(fov: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centre and radius of each FOV from its mask: column extent (never cut) and row middle."""
    n, _, h, w = fov.shape
    cols = fov.any(2).view(n, w)
    rows = fov.any(3).view(n, h)
    idx_w = torch.arange(w, device=fov.device, dtype=torch.float32)
    idx_h = torch.arange(h, device=fov.device, dtype=torch.float32)
    big = float(max(h, w) * 4)
    x0 = torch.where(cols, idx_w, big).amin(1)
    x1 = torch.where(cols, idx_w, -big).amax(1) + 1
    y0 = torch.where(rows, idx_h, big).amin(1)
    y1 = torch.where(rows, idx_h, -big).amax(1) + 1
    found = cols.any(1)
    r = torch.where(found, (x1 - x0) / 2, torch.zeros_like(x0))
    cx = torch.where(found, (x0 + x1) / 2, torch.full_like(x0, w / 2))
    cy = torch.where(found, (y0 + y1) / 2, torch.full_like(x0, h / 2))
    return cx, cy, r


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, 1, H, W), reflect-padded."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:
        k = k[radius - pad: radius + pad + 1]
        k = k / k.sum()
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))


def _masked_blur(x: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Blur of ``x`` over ``mask`` only (normalised convolution): the black surround stays out."""
    m = mask.float()
    return _blur(x * m, sigma) / _blur(m, sigma).clamp(min=1e-6)


def _closing(x: Tensor, size: int) -> Tensor:
    pad = size // 2
    dilated = F.max_pool2d(F.pad(x, (pad,) * 4, mode="replicate"), size, stride=1)
    return -F.max_pool2d(F.pad(-dilated, (pad,) * 4, mode="replicate"), size, stride=1)


def _ramp(z: Tensor, lo_hi: tuple[float, float]) -> Tensor:
    lo, hi = lo_hi
    return ((z - lo) / (hi - lo)).clamp(0, 1)


def _masked_stats(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    v = torch.where(mask, x, torch.nan).flatten(1)
    med = torch.nanquantile(v, 0.5, dim=1)
    spread = torch.nanquantile(v, 0.75, dim=1) - torch.nanquantile(v, 0.25, dim=1)
    return torch.nan_to_num(med), torch.nan_to_num(spread).clamp(min=1e-6)


@torch.no_grad()
def find_anatomy(images: Tensor, fov: Tensor) -> Anatomy:
    """Optic disc, fovea and vessels of each image (see the module docstring).

    Parameters
    ----------
    images : Tensor
        (N, 3, H, W) RGB, float in [0, 1] or uint8, on any device.
    fov : Tensor
        bool (N, 1, H, W) field of view (e.g. the audit's, or :func:`~medig.preprocess.fov_mask`).

    Returns
    -------
    Anatomy
        In the images' pixel coordinates, on their device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if fov.shape[0] != images.shape[0] or fov.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"fov {tuple(fov.shape)} does not match images {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    n, _, h, w = x.shape
    fov = fov.bool().view(n, 1, h, w)
    cx, cy, r_full = _fov_circle(fov)
    scale = (WORK_RADIUS / r_full.max().clamp(min=1.0)).clamp(max=1.0).item()
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    if (sh, sw) != (h, w):
        xs = F.interpolate(x, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
        m = F.interpolate(fov.float(), size=(sh, sw), mode="bilinear", antialias=True,
                          align_corners=False) > 0.5
    else:
        xs, m = x, fov
    sx, sy = sw / w, sh / h
    wcx, wcy, wr = cx * sx, cy * sy, r_full * sx
    r_med = float(wr.median().clamp(min=4.0))
    dev = x.device
    ys_ = torch.arange(sh, device=dev, dtype=torch.float32).view(1, 1, -1, 1) + 0.5
    xs_ = torch.arange(sw, device=dev, dtype=torch.float32).view(1, 1, 1, -1) + 0.5
    rel = torch.sqrt((xs_ - wcx.view(-1, 1, 1, 1)) ** 2 + (ys_ - wcy.view(-1, 1, 1, 1)) ** 2)
    rel = rel / wr.clamp(min=1.0).view(-1, 1, 1, 1)

    grey = (0.299 * xs[:, 0:1] + 0.587 * xs[:, 1:2] + 0.114 * xs[:, 2:3])
    green = xs[:, 1:2]
    vessel_k = max(3, int(0.06 * r_med) | 1)

    # Optic disc: illumination-normalised brightness, vessels closed, disc-sized averaging.
    background = _masked_blur(grey, m, 0.5 * r_med)
    norm = torch.where(m, grey / background.clamp(min=1e-3), torch.zeros_like(grey))
    disc_px = DISC_SHARE * r_med
    # the vessels converge on the disc: close over a good part of its radius
    closed = _closing(norm, max(vessel_k, int(0.8 * disc_px) | 1))
    response = _masked_blur(closed, m, DISC_WINDOW * disc_px)
    search = m & (rel <= DISC_SEARCH)
    med, spread = _masked_stats(response, search)
    flat = torch.where(search, response, torch.full_like(response, -1e9)).flatten(1)
    peak, arg = flat.max(1)
    py = (arg // sw).float() + 0.5
    px = (arg % sw).float() + 0.5
    z = (peak - med) / spread
    # both: standing out of the FOV's spread (z) and much brighter than it (noise has the first)
    disc_conf = _ramp(z, DISC_Z) * _ramp(peak - med, DISC_CONTRAST) * search.flatten(1).any(1)
    # Refine: bright pixels (above halfway from the median to the peak) near the peak.
    near = ((xs_ - px.view(-1, 1, 1, 1)) ** 2 + (ys_ - py.view(-1, 1, 1, 1)) ** 2
            <= (1.4 * disc_px) ** 2) & m
    half = (med + 0.5 * (peak - med)).view(-1, 1, 1, 1)
    blob = near & (closed >= half)
    wgt = torch.where(blob, (closed - half).clamp(min=0), torch.zeros_like(closed)).flatten(1)
    total = wgt.sum(1).clamp(min=1e-9)
    dcx = torch.where(wgt.sum(1) > 0, (wgt * xs_.expand_as(closed).flatten(1)).sum(1) / total, px)
    dcy = torch.where(wgt.sum(1) > 0, (wgt * ys_.expand_as(closed).flatten(1)).sum(1) / total, py)
    area = blob.flatten(1).sum(1).float()
    dr = torch.sqrt(area / torch.pi).clamp(min=0.5 * disc_px, max=2.0 * disc_px)
    dr = torch.where(area > 0, dr, torch.full_like(dr, disc_px))
    disc_found = disc_conf > 0

    # Fovea: darkest smooth spot (vessels closed) in a sector towards the FOV centre.
    # closing removes the vessels, opening the foveal reflex (small and bright)
    k2 = 2 * vessel_k + 1
    dark = _masked_blur(-_closing(-_closing(norm, k2), k2), m, 0.8 * disc_px)
    to_c = torch.stack([wcx - dcx, wcy - dcy], 1)
    to_c = to_c / to_c.norm(dim=1, keepdim=True).clamp(min=1e-6)
    ex = dcx + to_c[:, 0] * FOVEA_DISTANCE * 2 * dr
    ey = dcy + to_c[:, 1] * FOVEA_DISTANCE * 2 * dr
    dist = torch.sqrt((xs_ - ex.view(-1, 1, 1, 1)) ** 2 + (ys_ - ey.view(-1, 1, 1, 1)) ** 2)
    sector = m & (dist <= FOVEA_WINDOW * 2 * dr.view(-1, 1, 1, 1)) & (rel <= 0.9)
    fmed, fspread = _masked_stats(dark, sector)
    # a mild pull towards the expected point: vignetting darkens the far side of the window
    pull = FOVEA_PULL * (dist / (FOVEA_WINDOW * 2 * dr.view(-1, 1, 1, 1))) ** 2
    score = (dark - fmed.view(-1, 1, 1, 1)) / fspread.view(-1, 1, 1, 1) + pull
    flat = torch.where(sector, score, torch.full_like(dark, 1e9)).flatten(1)
    low, farg = flat.min(1)
    low = fmed + fspread * (dark.flatten(1).gather(1, farg[:, None])[:, 0] - fmed) / fspread
    fy = (farg // sw).float() + 0.5
    fx = (farg % sw).float() + 0.5
    fovea_conf = _ramp((fmed - low) / fspread, FOVEA_Z) * disc_found * sector.flatten(1).any(1)

    # Vessels: black top-hat of the green channel, relative to the closing.
    # a light blur first: pixel noise is not a vessel
    green = _blur(green, 0.7)
    g_closed = _closing(green, vessel_k)
    tophat = (g_closed - green) / g_closed.clamp(min=0.02)
    inner = m & (rel <= 1 - RIM_SHARE / 2)
    vessels_small = (tophat > VESSEL_CONTRAST) & inner
    share = vessels_small.flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)
    vessel_conf = (share / (2 * MIN_VESSEL_SHARE)).clamp(0, 1) * (share >= MIN_VESSEL_SHARE)
    if (sh, sw) != (h, w):
        vessels = F.interpolate(vessels_small.float(), size=(h, w), mode="nearest") > 0.5
    else:
        vessels = vessels_small
    vessels = vessels & fov

    nan = torch.full_like(dcx, float("nan"))
    disc = torch.stack([torch.where(disc_found, dcx / sx, nan), torch.where(disc_found, dcy / sy, nan),
                        torch.where(disc_found, dr / sx, nan)], 1)
    fovea_found = fovea_conf > 0
    fovea = torch.stack([torch.where(fovea_found, fx / sx, nan),
                         torch.where(fovea_found, fy / sy, nan)], 1)
    return Anatomy(disc=disc, disc_confidence=disc_conf, fovea=fovea, fovea_confidence=fovea_conf,
                   vessels=vessels, vessel_confidence=vessel_conf.float(), fov=fov)
