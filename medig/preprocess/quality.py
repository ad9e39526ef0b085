# SPDX-License-Identifier: Apache-2.0
"""Is it a gradeable fundus photograph? Image-quality measures and a verdict, batched in torch.

:func:`assess_quality` works from what preprocessing already has -- the decoded photographs and
their field of view (:func:`~medig.preprocess.detect_fov`) -- on any device, with no learned
weights. Each photograph is cropped on its field of view and resampled to a fixed working
resolution (:data:`WORK_SIZE` pixels across the field), so every measure means the same at any
camera resolution:

- **field of view**: its shape (disk, disk cut by the frame, full frame, none) and
  ``fov_fraction``, the share of the frame it covers;
- **exposure**: ``saturated_fraction`` (washed out: the second-brightest channel at full scale),
  ``dark_fraction`` (crushed: even the brightest channel near black), ``shadow_fraction`` (far
  darker than the rest of the field: a small pupil, strong vignetting) and ``mean_luminance``;
- **focus**: ``sharpness``, the RMS Laplacian of the luminance relative to its local mean, in the
  lit part of the field -- vessels and lesion edges; defocus removes it;
- **colour and structure**: ``colour`` (``"red"``: the red-dominant, blue-poor light a retina
  reflects; ``"grey"``: red-free or infrared; ``"other"``; the row field ``image_colour``),
  ``edge_density`` and ``vessel_density`` (shares of the field with strong local contrast and on
  thin dark lines: a retina is a smooth background crossed by a few vessels; a scene, a document
  or a fur has edges, lines and fine detail everywhere).

The verdict ``quality`` is ``"gradeable"``, ``"ungradeable"`` (a retina, but too dark, washed
out, out of focus, in shadow or too small to grade) or ``"not_fundus"``, with short
``reasons``. Every threshold lives in :mod:`medig.preprocess.quality_thresholds`, with the
measurements that chose it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from medig.preprocess._images import image_list
from medig.preprocess.crop import _crop_circle_masks, _crop_list, _field_boxes
from medig.preprocess.field_of_view import FieldOfView
from medig.preprocess.fov_detection import detect_fov
from medig.preprocess.quality_thresholds import THRESHOLDS, QualityThresholds

__all__ = ["QUALITY_FIELDS", "QUALITY_LEVELS", "QualityResult", "WORK_SIZE", "assess_quality"]

#: The verdicts, best first.
QUALITY_LEVELS = ("gradeable", "ungradeable", "not_fundus")

#: Side of the working crop (pixels across the field of view) on which everything is measured.
WORK_SIZE = 256

#: The per-image result fields of :meth:`QualityResult.rows`, in order.
QUALITY_FIELDS = (
    "quality", "quality_reasons", "fov_shape", "fov_fraction", "sharpness", "saturated_fraction",
    "dark_fraction", "shadow_fraction", "mean_luminance", "image_colour", "edge_density",
    "vessel_density",
)

_MEASURES = ("fov_fraction", "fov_diameter", "sharpness", "saturated_fraction", "dark_fraction",
             "shadow_fraction", "mean_luminance", "edge_density", "vessel_density", "red_ratio",
             "green_ratio", "blue_ratio", "chroma", "hue")


@dataclass
class QualityResult:
    """Quality measures and verdicts of a batch of photographs (see :func:`assess_quality`).

    Attributes
    ----------
    quality : list of str
        ``"gradeable"``, ``"ungradeable"`` or ``"not_fundus"`` per image.
    reasons : list of list of str
        Why each image is not gradeable (empty for gradeable images), e.g.
        ``"over-exposed: 41% of the field washed out"``.
    fov_shape : list of str
        ``"circle"``, ``"cut"``, ``"full_frame"`` or ``"none"`` (see
        :func:`~medig.preprocess.detect_fov`).
    colour : list of str
        ``"red"``, ``"grey"``, ``"other"``, or ``"unknown"`` (nothing lit to judge).
    measures : dict of str to Tensor
        float64 (N,) CPU tensors: ``fov_fraction``, ``fov_diameter`` (pixels across the field),
        ``sharpness``, ``saturated_fraction``, ``dark_fraction``, ``shadow_fraction``,
        ``mean_luminance`` (0-1), ``edge_density``, the mean ``red_ratio``/``green_ratio``/
        ``blue_ratio`` of the lit field (each channel over their sum), ``chroma`` (mean
        saturation) and ``hue`` (degrees, of the mean colour); NaN where nothing was lit.
    """

    quality: list[str]
    reasons: list[list[str]]
    fov_shape: list[str]
    colour: list[str]
    measures: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.quality)

    @property
    def gradeable(self) -> Tensor:
        """bool (N,): the images that are gradeable."""
        return torch.tensor([q == "gradeable" for q in self.quality], dtype=torch.bool)

    def __getattr__(self, name: str) -> Tensor:
        measures = self.__dict__.get("measures", {})
        if name in measures:
            return measures[name]
        raise AttributeError(name)

    def rows(self, digits: int = 4) -> list[dict[str, Any]]:
        """One dict of :data:`QUALITY_FIELDS` per image (floats rounded to ``digits`` decimals;
        JSON-ready: NaN becomes None)."""
        out = []
        for i in range(len(self)):
            row: dict[str, Any] = {"quality": self.quality[i],
                                   "quality_reasons": list(self.reasons[i]),
                                   "fov_shape": self.fov_shape[i],
                                   "image_colour": self.colour[i]}
            for name in ("fov_fraction", "sharpness", "saturated_fraction", "dark_fraction",
                         "shadow_fraction", "mean_luminance", "edge_density",
                         "vessel_density"):
                value = float(self.measures[name][i])
                row[name] = round(value, digits) if math.isfinite(value) else None
            out.append({k: row[k] for k in QUALITY_FIELDS})
        return out


def quality_crops(images: Sequence[Tensor], fov: FieldOfView, size: int = WORK_SIZE,
                  rim: float = THRESHOLDS.rim
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each image's field of view at ``size`` x ``size`` (float in [0, 1]), its mask, the mask
    without a rim of ``rim`` times the radius, and the field's area in original pixels (N,).

    The crop is the square around the FOV circle (no margin), or the frame's square for a
    full-frame field; the masks exclude the zero padding and the camera-mask bands.
    """
    n = len(images)
    device = images[0].device
    out = torch.empty((n, 3, size, size), dtype=torch.float32, device=device)
    masks = torch.empty((n, 1, size, size), dtype=torch.bool, device=device)
    inner = torch.empty((n, 1, size, size), dtype=torch.bool, device=device)
    area = torch.empty(n, dtype=torch.float64)
    groups: dict[tuple[int, int, torch.dtype], list[int]] = {}
    for k, t in enumerate(images):
        groups.setdefault((t.shape[1], t.shape[2], t.dtype), []).append(k)
    for (h, w, _), idx in groups.items():
        index = torch.tensor(idx, device=fov.circles.device)
        circles, bands = fov.circles[index], fov.bands[index]
        full = fov.full_frame[index]
        boxes = _field_boxes(circles, full, h, w, 0.0)
        group = [images[k] if images[k].dtype == torch.uint8 else images[k].float()
                 for k in idx]
        crops = torch.empty((len(idx), 3, size, size), dtype=torch.float32, device=device)
        _crop_list(group, boxes.to(device), size, out=crops)
        if not group[0].dtype == torch.uint8:
            crops.clamp_(0.0, 1.0)
        circles, bands, boxes = circles.to(device), bands.to(device), boxes.to(device)
        full = full.to(device)
        gmasks = _crop_circle_masks(circles, boxes, (h, w), size, bands)
        # The rim: a ring inside the circle and the rows next to a camera-mask cut; a full
        # frame has no rim.
        trim = torch.where(full, 0.0, rim * circles[:, 2])
        shrunk = torch.stack([circles[:, 0], circles[:, 1], circles[:, 2] - trim], dim=1)
        gbands = torch.stack([bands[:, 0] + trim, bands[:, 1] - trim], dim=1)
        ginner = _crop_circle_masks(shrunk, boxes, (h, w), size, gbands) & gmasks
        side = (boxes[:, 2] - boxes[:, 0]).double().cpu()
        pos = torch.tensor(idx, device=device)
        out.index_copy_(0, pos, crops)
        masks.index_copy_(0, pos, gmasks)
        inner.index_copy_(0, pos, ginner)
        area[idx] = gmasks.flatten(1).sum(1).double().cpu() * (side / size) ** 2
    return out, masks, inner, area


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(values.dtype)
    return (values * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


def _local_mean(values: Tensor, mask: Tensor, cell: int) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` (N, 1, S, S) over the mask in a ~3-cell neighbourhood of each pixel.

    A normalised convolution made of pooling: masked sums over ``cell`` x ``cell`` blocks, a
    3 x 3 block average, then bilinear upsampling of sums and weights separately (so the black
    surround never darkens the rim). About a Gaussian of sigma ``cell``, at a fraction of the
    cost of one on CPU. Also returns the block-level means (N, 1, S/cell, S/cell; NaN where a
    block holds less than half a block of field) for field-wide quantiles.
    """
    m = mask.to(values.dtype)
    num = F.avg_pool2d(values * m, cell)
    den = F.avg_pool2d(m, cell)
    blocks = torch.where(den >= 0.5, num / den.clamp(min=1e-6), torch.nan)
    num = F.avg_pool2d(num, 3, 1, 1, count_include_pad=False)
    den = F.avg_pool2d(den, 3, 1, 1, count_include_pad=False)
    size = values.shape[-2:]
    num = F.interpolate(num, size=size, mode="bilinear", align_corners=False)
    den = F.interpolate(den, size=size, mode="bilinear", align_corners=False)
    return num / den.clamp(min=1e-6), blocks


def _binomial(x: Tensor) -> Tensor:
    """[1, 2, 1] / 4 blur along both axes (a Gaussian of sigma 0.71), edges replicated; as
    shifted adds, which CPUs run far faster than a one-channel convolution."""
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    x = (x[..., :-2, :] + 2 * x[..., 1:-1, :] + x[..., 2:, :]) * 0.25
    return (x[..., :-2] + 2 * x[..., 1:-1] + x[..., 2:]) * 0.25


def _denoise(x: Tensor, mask: Tensor) -> Tensor:
    """Noise-suppressing blur inside the field (normalised: the surround does not bleed in)."""
    m = mask.to(x.dtype)
    both = _binomial(torch.cat([x * m, m], dim=1))
    return both[:, :1] / both[:, 1:].clamp(min=1e-6)


def _laplacian(x: Tensor) -> Tensor:
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] \
        - x[..., 1:-1, 2:]
    return F.pad(lap, (1, 1, 1, 1))


def _gradient(x: Tensor) -> Tensor:
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return torch.sqrt(gx * gx + gy * gy)


def _dark_lines(x: Tensor) -> Tensor:
    """Strength of thin dark lines (vessels) in a smooth image (N, 1, S, S): from the Hessian's
    eigenvalues l1 >= l2, ``max(l1 - |l2|, 0)`` -- strong curvature across a line, little along
    it, and dark (a valley, l1 > 0); blobs and step edges score low."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    centre = p[..., 1:-1, 1:-1]
    ixx = p[..., 1:-1, 2:] + p[..., 1:-1, :-2] - 2 * centre
    iyy = p[..., 2:, 1:-1] + p[..., :-2, 1:-1] - 2 * centre
    ixy = (p[..., 2:, 2:] + p[..., :-2, :-2] - p[..., 2:, :-2] - p[..., :-2, 2:]) * 0.25
    half = 0.5 * (ixx + iyy)
    root = torch.sqrt((0.25 * (ixx - iyy) ** 2 + ixy * ixy).clamp(min=0))
    return (half + root - (half - root).abs()).clamp(min=0)


def _grow(mask: Tensor, pixels: int) -> Tensor:
    """Dilate a bool (N, 1, S, S) mask by ``pixels`` (a square), as shifted ors."""
    out = mask.clone()
    for _ in range(pixels):
        out[..., 1:, :] |= out[..., :-1, :].clone()
        out[..., :-1, :] |= out[..., 1:, :].clone()
        out[..., :, 1:] |= out[..., :, :-1].clone()
        out[..., :, :-1] |= out[..., :, 1:].clone()
    return out


def measure(x: Tensor, mask: Tensor, inner: Tensor, t: QualityThresholds = THRESHOLDS
            ) -> dict[str, Tensor]:
    """The quality measures of working crops ``x`` (N, 3, S, S) in [0, 1].

    ``mask`` is the field of view in the crops, ``inner`` the same without its rim (vignetting
    and resampling of the aperture edge are no exposure or focus fault, and the rim's contrast
    against the black surround is no edge of the retina). Returns a dict of (N,) float tensors
    on the crops' device (see :class:`QualityResult`).
    """
    s = x.shape[-1]
    scale = s / WORK_SIZE  # pixel scales below are in pixels of the 256-px working crop
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    top, low = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    second = r + g + b - top - low
    saturated = second >= t.saturated_level
    dark = top < t.dark_level
    cell = max(2, round(t.local_cell * scale))
    local, blocks = _local_mean(top, mask, cell)
    # The field's bright level: a high quantile of the block means (over ~800 blocks, not 65k
    # pixels), above the background of a retina lit through a small pupil, below its optic disc.
    bright = torch.nanquantile(blocks.flatten(1), t.bright_quantile, dim=1).nan_to_num(0.0)
    shadow = (local < t.shadow_level * bright.view(-1, 1, 1, 1)) & ~dark
    m: dict[str, Tensor] = {
        "saturated_fraction": _masked_mean(saturated.float(), inner),
        "dark_fraction": _masked_mean(dark.float(), inner),
        "shadow_fraction": _masked_mean(shadow.float(), inner),
        "mean_luminance": _masked_mean(lum, inner),
    }
    # Structure and focus on the lit field, away from the borders of clipped, crushed and
    # shadowed areas (no retinal structure), relative to the local brightness: a dim
    # photograph has the same vessels, only darker.
    lit = inner & ~_grow(shadow | saturated | dark, max(1, round(t.rim_pixels * scale)))
    smooth = _denoise(lum, mask)
    level, lum_blocks = _local_mean(lum, mask, cell)
    # Contrast is relative to the local luminance, but never to less than the shadow level:
    # near a shadow or the dim rim, a small local mean would turn the slope of the
    # illumination itself into "edges".
    lum_bright = torch.nanquantile(lum_blocks.flatten(1), t.bright_quantile, dim=1)
    lum_bright = lum_bright.nan_to_num(0.0)
    level = torch.maximum(level, t.shadow_level * lum_bright.view(-1, 1, 1, 1))
    level = level.clamp(min=t.dark_level)
    lap = _laplacian(smooth) * scale ** 2 / level
    m["sharpness"] = torch.sqrt(_masked_mean(lap * lap, lit))
    m["edge_density"] = _masked_mean((_gradient(smooth) * scale / level > t.edge_contrast)
                                     .float(), lit)
    m["vessel_density"] = _masked_mean((_dark_lines(smooth) * scale ** 2 / level
                                        > t.line_contrast).float(), lit)
    # Colour of the lit field (clipped pixels carry no colour).
    colour_px = lit & (top < t.saturated_level)
    enough = (colour_px.flatten(1).sum(1) >= t.min_colour_share * inner.flatten(1).sum(1))
    colour_px = torch.where(enough.view(-1, 1, 1, 1), colour_px, lit)
    sums = torch.stack([_masked_mean(c, colour_px) for c in (r, g, b)], dim=1)
    total = sums.sum(1, keepdim=True)
    ratios = torch.where(total > 0, sums / total.clamp(min=1e-6), torch.nan)
    m["red_ratio"], m["green_ratio"], m["blue_ratio"] = ratios.unbind(1)
    m["chroma"] = _masked_mean((top - low) / top.clamp(min=1e-3), colour_px)
    m["hue"] = torch.rad2deg(torch.atan2(math.sqrt(3) * (sums[:, 1] - sums[:, 2]),
                                         2 * sums[:, 0] - sums[:, 1] - sums[:, 2]))
    nothing = ~lit.flatten(1).any(1)
    for k in ("sharpness", "edge_density", "vessel_density", "red_ratio", "green_ratio",
              "blue_ratio", "chroma", "hue"):
        m[k] = torch.where(nothing, torch.nan, m[k])
    return m


def _colour(m: dict[str, float], t: QualityThresholds) -> str:
    if not math.isfinite(m["chroma"]):
        return "unknown"
    if m["chroma"] <= t.grey_chroma:
        return "grey"
    red = (m["red_ratio"] >= max(m["green_ratio"], m["blue_ratio"])
           and m["blue_ratio"] <= t.max_blue_ratio and t.hue_range[0] <= m["hue"] <= t.hue_range[1])
    return "red" if red else "other"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _texture_signs(m: dict[str, float], t: QualityThresholds) -> list[str]:
    """Which signs of a non-retinal texture an image shows."""
    signs = []
    if m["edge_density"] > t.max_edge_density:
        signs.append("edges")
    if m["vessel_density"] > t.max_vessel_density:
        signs.append("lines")
    if m["sharpness"] > t.max_sharpness:
        signs.append("fine detail")
    return signs  # NaN compares False: nothing lit, no sign


def verdict(m: dict[str, float], shape: str, colour: str, t: QualityThresholds = THRESHOLDS
            ) -> tuple[str, list[str]]:
    """The verdict and reasons of one image from its measures (floats), FOV shape and colour."""
    if shape == "none":
        return "ungradeable", ["no field of view (blank image)"]
    exposure = []
    if m["saturated_fraction"] >= t.max_saturated:
        exposure.append(f"over-exposed: {_pct(m['saturated_fraction'])} of the field washed out")
    if m["dark_fraction"] >= t.max_dark:
        exposure.append(f"under-exposed: {_pct(m['dark_fraction'])} of the field too dark")
    if m["shadow_fraction"] >= t.max_shadow:
        exposure.append(f"uneven illumination: {_pct(m['shadow_fraction'])} of the field in "
                        "shadow (small pupil?)")
    worst = max(m["saturated_fraction"], m["dark_fraction"])
    disc = shape in ("circle", "cut")
    # Colour and structure cannot be judged on a washed-out, black or half-shadowed image:
    # through a camera aperture it is a failed fundus exposure; edge to edge, only one so
    # extreme that it shows nothing is called that.
    if exposure and (disc or worst >= t.blank_exposure):
        return "ungradeable", exposure
    not_fundus = []  # what makes it no retinal image
    # Through an aperture, a partly washed-out fundus turns yellow-white: its colour is then
    # no evidence either way.
    colour_known = not (disc and m["saturated_fraction"] >= t.colour_unreliable)
    strict_red = m["green_ratio"] <= t.full_frame_max_green_ratio \
        and m["blue_ratio"] <= t.full_frame_max_blue_ratio
    if (colour_known and colour in ("other", "unknown")) \
            or (not disc and colour == "red" and not strict_red):
        not_fundus.append("colour")
    if not disc and colour == "grey":
        not_fundus.append("grey, without a circular field of view")
    # Texture: a retina is a smooth background crossed by a few vessels. A scene, a document
    # or a fur has edges, lines and fine detail everywhere. A red disk on black is strong
    # evidence of a fundus camera, so there two of the three signs are needed; one suffices
    # without the aperture, or for a grey image.
    texture = _texture_signs(m, t)
    if texture and (len(texture) >= 2 or not disc or colour != "red"):
        not_fundus.append("texture: " + _and(texture) + " everywhere")
    sharp = not math.isfinite(m["sharpness"]) or m["sharpness"] >= t.min_sharpness
    if disc and colour == "grey" and sharp and not texture \
            and m["vessel_density"] < t.min_vessel_density:
        not_fundus.append("grey, without a vessel pattern")
    if not_fundus:
        return "not_fundus", [f"not a retinal image ({'; '.join(not_fundus)})"]
    reasons = list(exposure)
    if m["fov_diameter"] < t.min_fov_diameter:
        reasons.append(f"too small: field of view {m['fov_diameter']:.0f} px across")
    elif math.isfinite(m["sharpness"]) and m["sharpness"] < t.min_sharpness:
        reasons.append(f"out of focus (sharpness {m['sharpness']:.3f})")
    return ("ungradeable", reasons) if reasons else ("gradeable", [])


def assess_quality(images: Tensor | Sequence[Tensor], fov: FieldOfView | None = None, *,
                   thresholds: QualityThresholds = THRESHOLDS, size: int = WORK_SIZE
                   ) -> QualityResult:
    """Is each photograph a gradeable fundus photograph? Measures and verdicts, batched.

    Parameters
    ----------
    images : Tensor or sequence of Tensor
        Decoded photographs: (N, 3, H, W) or a list of (3, H, W) of any sizes, uint8 or float in
        [0, 1] (a 1-channel image is repeated to 3), all on one device (CPU or CUDA).
    fov : FieldOfView, optional
        Their fields of view, as :func:`~medig.preprocess.detect_fov` (or ``FundusPreprocess``)
        found them; detected when omitted.
    thresholds : QualityThresholds, optional
        The verdict's thresholds (default :data:`~medig.preprocess.quality_thresholds.THRESHOLDS`).
    size : int, optional
        Working resolution across the field of view (default 256; the thresholds are measured
        there).

    Returns
    -------
    QualityResult

    Examples
    --------
    >>> from medig.synthetic import generate
    >>> images, _, _ = generate(2, size=512, seed=0)
    >>> assess_quality(images).quality
    ['gradeable', 'gradeable']
    """
    items = image_list(images)[0]
    if fov is None:
        fov = detect_fov(items)
    if len(fov) != len(items):
        raise ValueError(f"fov has {len(fov)} entries for {len(items)} images")
    with torch.no_grad():
        x, mask, inner, area = quality_crops(items, fov, size, thresholds.rim)
        measures = {k: v.double().cpu() for k, v in measure(x, mask, inner, thresholds).items()}
    frame = fov.sizes.double().cpu().prod(dim=1)
    measures["fov_fraction"] = area / frame
    measures["fov_diameter"] = 2 * torch.sqrt(area / math.pi)
    measures = {k: measures[k] for k in _MEASURES}
    shapes = fov.shape_names()
    colours, quality, reasons = [], [], []
    for i in range(len(items)):
        one = {k: float(v[i]) for k, v in measures.items()}
        colour = _colour(one, thresholds)
        q, why = verdict(one, shapes[i], colour, thresholds)
        colours.append(colour)
        quality.append(q)
        reasons.append(why)
    return QualityResult(quality, reasons, shapes, colours, measures)
