# SPDX-License-Identifier: Apache-2.0
"""Image-quality degradations of fundus photographs, each with a known severity.

The failures that make screening photographs ungradeable, applied to any batch of fundus images
(real ones or :func:`medig.synthetic.generate`'s): exposure (:func:`over_expose`,
:func:`under_expose`), focus (:func:`defocus`), illumination through a small pupil
(:func:`small_pupil`), and a camera crop without black border (:func:`full_frame_crop`, a
*gradeable* framing that must not be mistaken for a missing field of view).

Severities mean the same on every photograph: over-exposure as the share of the field washed
out, under-exposure in photographic stops below a normal exposure (applied in linear light: sRGB
decoded, scaled, re-encoded, as a camera's gain does), defocus as the blur's standard deviation
in units of the field-of-view diameter (so it means the same at any resolution), small pupil as
the part of the field's radius left dark. :data:`SEVERITIES` declares, for each degradation,
the severities at which a grader would still grade the photograph and those at which they would
not; the quality gate (:func:`medig.preprocess.assess_quality`) is tested against them.

Everything is pure torch, batched, and deterministic: the only randomness (sensor noise of an
under-exposed photograph) comes from ``seed``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from medig.preprocess.field_of_view import circle_mask
from medig.preprocess.fov_detection import detect_fov_circles
from medig.preprocess.graham import gaussian_blur_masked

__all__ = ["DEGRADATIONS", "SEVERITIES", "defocus", "degrade", "full_frame_crop", "over_expose",
           "small_pupil", "under_expose"]

#: Declared severities per degradation: ``gradeable`` ones a grader would still grade,
#: ``ungradeable`` ones they would not (the range between is left undecided, as graders disagree
#: there). Units: share of the field washed out for over-exposure, stops below a normal exposure
#: for under-exposure, blur sigma / FOV diameter for defocus, dark fraction of the
#: radius for the small pupil, side / inscribed square for the crop (always gradeable).
SEVERITIES: dict[str, dict[str, tuple[float, ...]]] = {
    "over_expose": {"gradeable": (0.0, 0.05, 0.1), "ungradeable": (0.6, 0.75, 0.9)},
    "under_expose": {"gradeable": (0.0, 1.5, 3.0), "ungradeable": (6.0, 6.5, 7.0)},
    "defocus": {"gradeable": (0.0, 0.001, 0.002), "ungradeable": (0.012, 0.016, 0.024)},
    "small_pupil": {"gradeable": (0.0, 0.1, 0.2), "ungradeable": (0.6, 0.7, 0.8)},
    "full_frame_crop": {"gradeable": (0.8, 0.9, 1.0), "ungradeable": ()},
}


def _check(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {shape}")
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    return images


def _per_image(value: float | Tensor, n: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    return t.expand(n).clone() if t.ndim == 0 else t.float()


def _to_linear(x: Tensor) -> Tensor:
    """sRGB-encoded [0, 1] to linear light (IEC 61966-2-1)."""
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _to_srgb(x: Tensor) -> Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=1e-12) ** (1 / 2.4) - 0.055)


def _u8(x: Tensor) -> Tensor:
    return (x.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)


def _circles(images: Tensor, circles: Tensor | None) -> Tensor:
    return detect_fov_circles(images) if circles is None else circles.float().to(images.device)


def _linear_in_field(images: Tensor, circles: Tensor | None) -> tuple[Tensor, Tensor]:
    """The photographs in linear light, float (N, 3, H, W), and their FOV masks (N, 1, H, W)."""
    x = _check(images).float() / 255.0
    mask = circle_mask(_circles(images, circles), x.shape[-2], x.shape[-1])
    return _to_linear(x), mask


def _fov_quantile(values: Tensor, mask: Tensor, q: float) -> Tensor:
    """Per-image quantile ``q`` of ``values`` (N, H, W) inside ``mask`` (N, 1, H, W)."""
    v = torch.where(mask[:, 0], values, torch.nan).flatten(1)
    return torch.nanquantile(v, q, dim=1)


def over_expose(images: Tensor, clipped: float | Tensor, circles: Tensor | None = None) -> Tensor:
    """Over-expose until a fraction ``clipped`` of the field of view is washed out.

    The severity is what a grader sees: the share of the retina where the image carries no detail
    any more. A linear-light gain (as a longer exposure or a stronger flash) is chosen per image so
    that exactly that share of the FOV has its *second-brightest* channel at full scale: red clips
    first on a fundus (still gradeable, the detail is in green), then green -- the pixel turns
    yellow-white and its vessels and lesions are gone. Where the photograph already has more
    clipped pixels (a bright optic disc), it is left as it is (gain never below 1).

    Parameters
    ----------
    images : Tensor
        uint8 (N, 3, H, W) fundus photographs.
    clipped : float or Tensor
        Share of the FOV washed out, in [0, 1) (per batch, or one value per image).
    circles : Tensor, optional
        (N, 3) FOV circles; detected when omitted.

    Returns
    -------
    Tensor
        uint8 (N, 3, H, W).
    """
    lin, mask = _linear_in_field(images, circles)
    n = lin.shape[0]
    share = _per_image(clipped, n, lin.device).clamp(0.0, 0.999)
    second = lin.sort(dim=1).values[:, 1]
    level = torch.stack([_fov_quantile(second[i:i + 1], mask[i:i + 1], 1.0 - float(share[i]))[0]
                         for i in range(n)])
    gain = torch.where(share > 0, 1.0 / level.clamp(min=1e-4), torch.ones_like(level))
    return _u8(_to_srgb(lin * gain.clamp(min=1.0).view(-1, 1, 1, 1)))


#: Linear-light level of the median brightest channel (red on a colour fundus) in the field of a
#: normally exposed photograph: sRGB ~150 of 255, as on a well exposed 45-degree fundus photograph.
NORMAL_EXPOSURE = 0.3


def under_expose(images: Tensor, stops: float | Tensor, noise: float = 1.0, seed: int = 0,
                 circles: Tensor | None = None) -> Tensor:
    """Under-expose to ``stops`` stops below a normal exposure, with sensor read noise.

    Each image is first brought to a normal exposure (median brightest channel in the field at
    :data:`NORMAL_EXPOSURE` in linear light), then darkened by ``2 ** -stops``; so a severity
    means the same on a bright and on a dark photograph. At 3 stops the median red level is
    about 55 of 255 (a dark but gradeable photograph), at 6 stops about 15 with green at a few
    levels, where the noise (``noise`` grey levels after encoding) and 8-bit quantisation have
    destroyed the detail.

    Parameters
    ----------
    images : Tensor
        uint8 (N, 3, H, W).
    stops : float or Tensor
        Stops below normal exposure, >= 0 (per batch or per image).
    noise : float, optional
        Read noise in grey levels (default 1).
    seed : int, optional
        Seed of the noise.
    circles : Tensor, optional
        (N, 3) FOV circles; detected when omitted.

    Returns
    -------
    Tensor
        uint8 (N, 3, H, W).
    """
    lin, mask = _linear_in_field(images, circles)
    n = lin.shape[0]
    bright = lin.amax(dim=1)
    level = torch.stack([_fov_quantile(bright[i:i + 1], mask[i:i + 1], 0.5)[0] for i in range(n)])
    gain = NORMAL_EXPOSURE / level.clamp(min=1e-4) * torch.exp2(-_per_image(stops, n, lin.device))
    y = _to_srgb(lin * gain.view(-1, 1, 1, 1)) * 255.0
    g = torch.Generator().manual_seed(seed)
    y = y + noise * torch.randn(y.shape, generator=g).to(y.device)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def defocus(images: Tensor, blur: float | Tensor, circles: Tensor | None = None) -> Tensor:
    """Defocus: Gaussian blur of the retina with sigma ``blur`` times the FOV diameter.

    Only the retina is blurred (a normalised convolution inside the field of view), and the
    aperture edge stays sharp, as it is on a camera whose mask sits in another focal plane.

    Parameters
    ----------
    images : Tensor
        uint8 (N, 3, H, W).
    blur : float or Tensor
        Sigma as a fraction of the FOV diameter (0.01 = 15 px on a 1500-px field), per batch or
        per image.
    circles : Tensor, optional
        (N, 3) FOV circles; detected when omitted.

    Returns
    -------
    Tensor
        uint8 (N, 3, H, W).
    """
    x = _check(images).float() / 255.0
    n, _, h, w = x.shape
    c = _circles(images, circles)
    mask = circle_mask(c, h, w)
    sigmas = _per_image(blur, n, x.device) * 2 * c[:, 2]
    out = x.clone()
    for i in range(n):
        s = float(sigmas[i])
        if s > 0.05:
            blurred = gaussian_blur_masked(x[i:i + 1], mask[i:i + 1], s)
            out[i] = torch.where(mask[i], blurred[0], x[i])
    return _u8(out)


#: Width of the fall from full light to shadow behind a small pupil, as a fraction of the radius.
_PUPIL_FALLOFF = 0.2
#: Stray light in the shadow of a small pupil, in linear light (~20 of 255 grey levels): the haze
#: that keeps the aperture faintly visible around the dark periphery.
PUPIL_HAZE = 0.007


def small_pupil(images: Tensor, dark: float | Tensor, circles: Tensor | None = None) -> Tensor:
    """Illumination through a small pupil: the outer ``dark`` fraction of the radius goes dark.

    The light falls smoothly (a cosine over 20% of the radius) from full inside radius
    ``(1 - dark) r`` to 2% at ``(1 - dark) r + 0.2 r`` and beyond, the vignetting of a pupil too
    small for the camera, and the shadow fills with a faint haze of stray light
    (:data:`PUPIL_HAZE`, reddish like the light scattered by the retina): the aperture stays
    faintly visible, the periphery carries no detail. ``dark = 0.5`` leaves about 60% of the
    field in shadow.

    Parameters
    ----------
    images : Tensor
        uint8 (N, 3, H, W).
    dark : float or Tensor
        Fraction of the FOV radius darkened, in [0, 1] (per batch or per image).
    circles : Tensor, optional
        (N, 3) FOV circles; detected when omitted.

    Returns
    -------
    Tensor
        uint8 (N, 3, H, W).
    """
    x = _check(images).float() / 255.0
    n, _, h, w = x.shape
    c = _circles(images, circles)
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, 1, -1, 1) + 0.5
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, 1, -1) + 0.5
    d = torch.sqrt((xs - c[:, 0].view(-1, 1, 1, 1)) ** 2 + (ys - c[:, 1].view(-1, 1, 1, 1)) ** 2)
    d = d / c[:, 2].view(-1, 1, 1, 1)
    lit = (1.0 - _per_image(dark, n, x.device)).view(-1, 1, 1, 1)
    t = ((d - lit) / _PUPIL_FALLOFF).clamp(0.0, 1.0)
    light = 0.02 + 0.98 * 0.5 * (1 + torch.cos(math.pi * t))
    light = torch.where(lit >= 1.0, torch.ones_like(light), light)
    aperture = circle_mask(c, h, w) & (x.amax(dim=1, keepdim=True) > 8 / 255)
    haze = PUPIL_HAZE * torch.tensor([1.0, 0.45, 0.3], device=x.device).view(1, 3, 1, 1)
    y = _to_linear(x) * light + haze * (1.0 - light) * aperture
    return _u8(_to_srgb(y))


def full_frame_crop(images: Tensor, scale: float = 1.0, aspect: float = 4 / 3,
                    circles: Tensor | None = None) -> Tensor:
    """A camera crop without black border: a centred rectangle inside the field of view.

    The rectangle of aspect ``aspect`` (width / height) inscribed in the FOV circle, scaled by
    ``scale`` (1: its corners touch the circle; below 1: a tighter crop), resized back to the
    input height. The result is all retina, edge to edge: a gradeable photograph whose field of
    view is the whole frame.

    Parameters
    ----------
    images : Tensor
        uint8 (N, 3, H, W).
    scale : float, optional
        Size relative to the inscribed rectangle, in (0, 1] (default 1).
    aspect : float, optional
        Width / height of the crop (default 4:3).
    circles : Tensor, optional
        (N, 3) FOV circles; detected when omitted.

    Returns
    -------
    Tensor
        uint8 (N, 3, H, round(H * aspect)).
    """
    from medig.preprocess.crop import crop_boxes

    _check(images)
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    h = images.shape[2]
    c = _circles(images, circles)
    # Half-diagonal of the inscribed rectangle is r: half sides r cos(a), r sin(a).
    angle = math.atan2(1.0, aspect)
    hw, hh = c[:, 2] * math.cos(angle) * scale, c[:, 2] * math.sin(angle) * scale
    # Stay inside the frame too (a disk cut at top and bottom).
    hh = torch.minimum(hh, torch.minimum(c[:, 1], h - c[:, 1]))
    hw = torch.minimum(hw, hh * aspect)
    boxes = torch.stack([c[:, 0] - hw, c[:, 1] - hh, c[:, 0] + hw, c[:, 1] + hh], dim=1)
    boxes = torch.cat([boxes[:, :2].ceil(), boxes[:, 2:].floor()], dim=1)
    return crop_boxes(images, boxes, (h, round(h * aspect)))


#: Each degradation by name, as ``fn(images, severity) -> images``.
DEGRADATIONS: dict[str, Callable[..., Tensor]] = {
    "over_expose": over_expose,
    "under_expose": under_expose,
    "defocus": defocus,
    "small_pupil": small_pupil,
    "full_frame_crop": full_frame_crop,
}


def degrade(images: Tensor, name: str, severity: float, seed: int = 0,
            circles: Tensor | None = None) -> Tensor:
    """Apply degradation ``name`` (a key of :data:`DEGRADATIONS`) at ``severity``.

    Parameters
    ----------
    images : Tensor
        uint8 (N, 3, H, W) fundus photographs.
    name : str
        One of :data:`DEGRADATIONS`.
    severity : float
        In the degradation's units (see :data:`SEVERITIES`).
    seed : int, optional
        Seed for the degradations that draw noise.
    circles : Tensor, optional
        (N, 3) FOV circles of ``images``; detected when omitted.

    Returns
    -------
    Tensor
        uint8 images (the crop changes the width).
    """
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    if name == "under_expose":
        return under_expose(images, severity, seed=seed, circles=circles)
    return DEGRADATIONS[name](images, severity, circles=circles)
