# SPDX-License-Identifier: Apache-2.0
"""Fundus-like disks of known centre and radius, for tests and benchmarks of :mod:`medig.preprocess`.

Not a fundus simulator (see :mod:`medig.synthetic.fundus` for that): just the photometric traits
that break FOV detection -- an orange-red disk with vignetting, a brighter optic disc, a few
vessels, sensor noise on a not-quite-black background, and optional camera-mask cuts, a notch,
dark lesions and bright burned-in text.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["synthetic_disk"]


def synthetic_disk(
    height: int,
    width: int,
    cx: float,
    cy: float,
    r: float,
    *,
    brightness: float = 1.0,
    vignetting: float = 0.45,
    noise: float = 3.0,
    background: float = 4.0,
    cut: tuple[float, float] | None = None,
    notch: bool = False,
    lesions: int = 0,
    text: bool = False,
    seed: int = 0,
) -> Tensor:
    """One synthetic fundus-like image, uint8 (3, height, width).

    Parameters
    ----------
    height, width : int
        Image size.
    cx, cy, r : float
        True disk circle in continuous pixel coordinates (pixel centres at ``j + 0.5``).
    brightness : float
        Multiplier of the disk colour (0.15 gives a dark, low-contrast fundus).
    vignetting : float
        Fractional intensity drop from the centre to the rim.
    noise : float
        Std of Gaussian sensor noise, in 0-255 units (everywhere, background included).
    background : float
        Mean background level, 0-255 units.
    cut : tuple of float, optional
        ``(top, bottom)`` rows of the camera mask: rows above ``top`` and below ``bottom`` are black
        (as on cameras whose mask cuts the disk). The circle is unchanged.
    notch : bool
        Black triangular notch into the rim at the right.
    lesions : int
        Number of dark blot haemorrhages inside the disk, some touching the rim region.
    text : bool
        White text-like blocks burned into the top-left and bottom-right corners.
    seed : int
        Random seed (noise, vessel and lesion placement).
    """
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, -1) + 0.5
    d = torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / r
    # Anti-aliased disk edge (one pixel wide), like a real optical aperture imaged by a sensor.
    inside = torch.clamp((1.0 - d) * r + 0.5, 0.0, 1.0)
    shade = 1.0 - vignetting * d.clamp(max=1.0) ** 2
    colour = torch.tensor([200.0, 95.0, 40.0]).view(3, 1, 1) * brightness
    img = colour * shade
    # Optic disc (bright, yellowish) and a few dark vessels.
    od = torch.exp(-(((xs - (cx - 0.35 * r)) ** 2 + (ys - cy) ** 2) / (2 * (0.08 * r) ** 2)))
    img = img + torch.tensor([55.0, 110.0, 90.0]).view(3, 1, 1) * brightness * od
    angle = torch.atan2(ys - cy, xs - (cx - 0.35 * r))
    for k in range(6):
        a0 = float(torch.rand(1, generator=g)) * 2 * math.pi
        vessel = torch.exp(-((torch.remainder(angle - a0 + math.pi, 2 * math.pi) - math.pi) ** 2)
                           / (2 * 0.02 ** 2))
        img = img * (1 - 0.35 * vessel)
    for _ in range(lesions):
        rad = float(torch.rand(1, generator=g)) * 0.8 * r
        ang = float(torch.rand(1, generator=g)) * 2 * math.pi
        lx, ly = cx + rad * math.cos(ang), cy + rad * math.sin(ang)
        size = 0.04 * r + float(torch.rand(1, generator=g)) * 0.08 * r
        blot = ((xs - lx) ** 2 + (ys - ly) ** 2) <= size ** 2
        img = torch.where(blot, img * 0.15, img)
    img = img * inside + background * (1 - inside)
    if notch:
        tri = (xs > cx + 0.9 * r) & ((ys - cy).abs() < (xs - (cx + 0.9 * r)) * 0.6 + 1)
        img = torch.where(tri, torch.full_like(img, background), img)
    if cut is not None:
        top, bottom = cut
        keep = (ys >= top) & (ys <= bottom)
        img = torch.where(keep, img, torch.full_like(img, background))
    if text:
        th, tw = max(4, height // 25), max(12, width // 6)
        for (y0, x0) in ((height // 40, width // 40), (height - height // 40 - th, width - width // 40 - tw)):
            block = torch.zeros(height, width, dtype=torch.bool)
            # Characters: vertical strokes with gaps, like a date/ID overlay.
            stroke = (torch.arange(width) // max(2, tw // 24)) % 3 != 2
            block[y0:y0 + th, x0:x0 + tw] = stroke[x0:x0 + tw].expand(th, -1)
            img = torch.where(block, torch.full_like(img, 250.0), img)
    img = img + noise * torch.randn(img.shape, generator=g)
    return img.round().clamp(0, 255).to(torch.uint8)
