# SPDX-License-Identifier: Apache-2.0
"""Attribution overlays for fundus images, in the diabetic-retinopathy IG convention.

The convention follows Sayres et al. (Ophthalmology 2019) and the IG authors' code: attributions are
summed over colour channels, clipped at a high percentile of ``|a|`` inside the field of view (FOV),
and drawn over a dimmed greyscale fundus with **positive** attribution (evidence *for* the explained
class) in the **green** channel and **negative** attribution (evidence *against*) in the **red**
channel. Attribution outside the FOV is drawn too, over a frame dimmed further
(:data:`OUTSIDE_DIM`), and the FOV's border is drawn as a thin blue line (:data:`BORDER_RGB`): a
model that reads a corner stamp or the rim of the aperture shows it on its overlay.

Colour mapping, per pixel, with ``g`` the dimmed grey level and ``alpha = clip(|a| / clip, 0, 1) **
gamma``::

    positive a:  (R, G, B) = ((1 - alpha) g,  (1 - alpha) g + alpha,  (1 - alpha) g)
    negative a:  (R, G, B) = ((1 - alpha) g + alpha,  (1 - alpha) g,  (1 - alpha) g)

so zero attribution shows the plain grey fundus and ``|a| >= clip`` shows pure green or pure red.
``gamma < 1`` (default 0.5) lifts small attributions so the sparse, low-amplitude evidence typical of IG
on fundus images (microaneurysm rims, exudate edges) stays visible; perceived colour then grows roughly
with the square root of the attribution, which should be kept in mind when comparing two spots.

Scale: the clip value is a percentile of ``|a|`` over the **whole frame** (pass ``fov_mask=None`` to
:func:`clip_value` and :func:`abs_quantiles`, as the audit does), so evidence outside the FOV is on
the same scale as evidence inside. One clip value should be used for the **whole audit** so that the same attribution shows the
same colour on every image (Captum does not normalise across images, captum issue #1103). Because an
audit may be split across processes, each image contributes a fixed-size quantile sketch
(:func:`abs_quantiles`) and :func:`cohort_clip_value` pools the sketches deterministically.
:func:`clip_value` gives the per-image alternative.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from medig.utils import atomic_path

__all__ = [
    "BORDER_RGB",
    "DEFAULT_DIM",
    "DEFAULT_GAMMA",
    "DEFAULT_PERCENTILE",
    "OUTSIDE_DIM",
    "abs_quantiles",
    "attribution_map",
    "clip_value",
    "cohort_clip_value",
    "fov_border",
    "legend_strip",
    "overlay",
    "png_bytes",
    "save_png",
    "side_by_side",
]

DEFAULT_PERCENTILE = 99.5
"""Percentile of ``|a|`` at which the colour saturates (Sayres 2019 used 99-99.9)."""
DEFAULT_GAMMA = 0.5
"""Exponent applied to ``|a| / clip``; < 1 makes weak evidence visible."""
DEFAULT_DIM = 0.6
"""Multiplier on the greyscale fundus so that saturated green/red stand out from bright retina."""
OUTSIDE_DIM = 0.5
"""Further multiplier on the grey outside the FOV: the frame stays visible, the retina stands out."""
BORDER_RGB = (0.3, 0.5, 1.0)
"""Colour of the FOV border: blue, a colour the attribution scale never uses."""
_BORDER_ALPHA = 0.8

ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray)

# ITU-R BT.601 luma: the same weights PIL uses for "L", so the grey matches what a viewer expects.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu").numpy()
    return np.asarray(x)


def _like(result: np.ndarray, reference: ArrayLike) -> ArrayLike:
    """Return ``result`` as a tensor when ``reference`` is one (on CPU), else as an array."""
    return (
        torch.from_numpy(np.ascontiguousarray(result))
        if isinstance(reference, torch.Tensor)
        else result
    )


def _as_map(attr_map: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float64 (H, W) map from (H, W), (1, H, W) or (1, 1, H, W)."""
    a = _np(attr_map).astype(np.float64, copy=False)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(
            f"expected a single-channel map (1, H, W), got shape {tuple(_np(attr_map).shape)}"
        )
    return a


def _as_mask(
    fov_mask: torch.Tensor | np.ndarray | None, shape: tuple[int, int]
) -> np.ndarray | None:
    if fov_mask is None:
        return None
    m = _np(fov_mask).astype(bool, copy=False)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.shape != shape:
        raise ValueError(f"fov_mask shape {m.shape} does not match attribution map shape {shape}")
    return m


def _as_uint8_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 from uint8 or float-in-[0, 1] input."""
    x = _np(image)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W), got shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    return np.round(np.clip(x.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def attribution_map(attributions: ArrayLike) -> ArrayLike:
    """Sum attributions over colour channels.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
        ``(N, C, H, W)`` or ``(C, H, W)`` attributions (e.g. ``Explanation.attributions``).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(N, 1, H, W)`` or ``(1, H, W)`` signed map, same kind (tensor/array) and device as the input.
        Summing keeps completeness: the map still sums to ``F(x) - F(x')``.
    """
    if attributions.ndim not in (3, 4):
        raise ValueError(
            f"expected (N, C, H, W) or (C, H, W), got shape {tuple(attributions.shape)}"
        )
    dim = attributions.ndim - 3
    if isinstance(attributions, torch.Tensor):
        return attributions.sum(dim=dim, keepdim=True)
    return np.asarray(attributions).sum(axis=dim, keepdims=True)


def _abs_inside(
    attr_map: torch.Tensor | np.ndarray, fov_mask: torch.Tensor | np.ndarray | None
) -> np.ndarray:
    a = _as_map(attr_map)
    m = _as_mask(fov_mask, a.shape)
    values = np.abs(a if m is None else a[m])
    return values[np.isfinite(values)]


def clip_value(
    attr_map: torch.Tensor | np.ndarray,
    fov_mask: torch.Tensor | np.ndarray | None = None,
    percentile: float = DEFAULT_PERCENTILE,
) -> float:
    """Per-image clip value: the ``percentile`` of ``|a|`` inside the FOV.

    Parameters
    ----------
    attr_map : torch.Tensor or numpy.ndarray
        ``(1, H, W)`` (or ``(H, W)``) channel-summed attribution map.
    fov_mask : torch.Tensor or numpy.ndarray or None
        Boolean FOV mask of the same spatial shape; ``None`` uses every pixel.
    percentile : float
        In ``[0, 100]``.

    Returns
    -------
    float
        The clip value; ``0.0`` when the FOV is empty or holds no finite value (the overlay then shows
        no colour).
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    values = _abs_inside(attr_map, fov_mask)
    if values.size == 0:
        return 0.0
    return float(np.percentile(values, percentile))


def abs_quantiles(
    attr_map: torch.Tensor | np.ndarray,
    fov_mask: torch.Tensor | np.ndarray | None,
    n: int = 1001,
) -> np.ndarray:
    """Quantile sketch of ``|a|`` inside the FOV, for a cohort-wide clip value.

    Parameters
    ----------
    attr_map : torch.Tensor or numpy.ndarray
        ``(1, H, W)`` channel-summed attribution map.
    fov_mask : torch.Tensor or numpy.ndarray or None
        Boolean FOV mask; ``None`` uses every pixel.
    n : int
        Number of evenly spaced quantile levels ``0, 1/(n-1), ..., 1`` (>= 2). With the default 1001 the
        99.5th percentile falls exactly on a knot.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64, non-decreasing; it is small and JSON-serialisable (``.tolist()``), so worker
        processes can ship it to whoever renders. All-NaN when the FOV is empty (ignored by
        :func:`cohort_clip_value`).
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    values = _abs_inside(attr_map, fov_mask)
    if values.size == 0:
        return np.full(n, np.nan)
    return np.quantile(values, np.linspace(0.0, 1.0, n))


def _sketch_cdf(sketches: np.ndarray, x: float) -> np.ndarray:
    """Per-sketch CDF at ``x``, the quantile function being piecewise linear between knots."""
    n = sketches.shape[1]
    k = (sketches <= x).sum(axis=1)  # knots <= x, right-continuous at ties
    inside = (k > 0) & (k < n)
    cdf = np.where(k >= n, 1.0, 0.0)
    rows = np.nonzero(inside)[0]
    lo = sketches[rows, k[rows] - 1]
    hi = sketches[rows, k[rows]]
    cdf[rows] = ((k[rows] - 1) + (x - lo) / (hi - lo)) / (n - 1)
    return cdf


def cohort_clip_value(
    sketches: Sequence[np.ndarray | Sequence[float]],
    percentile: float = DEFAULT_PERCENTILE,
    weights: Sequence[float] | None = None,
) -> float:
    """Cohort-wide clip value from per-image :func:`abs_quantiles` sketches.

    The pooled distribution is the (weighted) mixture of the per-image distributions, each read from its
    sketch as a piecewise-linear quantile function; the function returns the exact ``percentile`` of that
    mixture. The result does not depend on the order of ``sketches`` (they are sorted first), so audits
    split across processes get the same scale as a single-process run.

    Parameters
    ----------
    sketches : sequence of array-like
        One ``(n,)`` sketch per image, all of the same length. All-NaN sketches (empty FOV) are ignored.
    percentile : float
        In ``[0, 100]``.
    weights : sequence of float, optional
        Relative weight per image (e.g. its FOV pixel count). Default: equal weights, which equals the
        pooled-pixel percentile when the FOVs are of equal size.

    Returns
    -------
    float
        The clip value (``0.0`` if no usable sketch).
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if len(sketches) == 0:
        return 0.0
    arr = np.asarray([np.asarray(s, dtype=np.float64) for s in sketches])
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError("sketches must all be 1-D with the same length >= 2")
    w = np.ones(len(arr)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(arr),) or np.any(w < 0):
        raise ValueError("weights must be one non-negative number per sketch")
    keep = ~np.isnan(arr).all(axis=1) & (w > 0)
    arr, w = arr[keep], w[keep]
    if len(arr) == 0:
        return 0.0
    arr = np.sort(arr, axis=1)  # guard against float noise in np.quantile's output
    order = np.lexsort(arr.T[::-1])
    arr, w = arr[order], w[order] / w[order].sum()
    p = percentile / 100.0

    # The mixture CDF is piecewise linear between consecutive distinct knots of all sketches, so finding
    # the first knot where it reaches p (bisection) and interpolating from the previous knot is exact.
    knots = np.unique(arr)

    def cdf(x: float) -> float:
        return float(np.dot(w, _sketch_cdf(arr, x)))

    lo, hi = 0, len(knots) - 1
    if cdf(knots[0]) >= p:
        return float(knots[0])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cdf(knots[mid]) >= p:
            hi = mid
        else:
            lo = mid
    c_lo, c_hi = cdf(knots[lo]), cdf(knots[hi])
    if c_hi <= c_lo:
        return float(knots[hi])
    t = (p - c_lo) / (c_hi - c_lo)
    return float(knots[lo] + t * (knots[hi] - knots[lo]))


def overlay(
    image: ArrayLike,
    attr_map: torch.Tensor | np.ndarray,
    fov_mask: torch.Tensor | np.ndarray | None,
    clip: float,
    gamma: float = DEFAULT_GAMMA,
    dim: float = DEFAULT_DIM,
) -> ArrayLike:
    """Draw a signed attribution map over a dimmed greyscale fundus (green = +, red = -).

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        ``(3, H, W)`` RGB, float in ``[0, 1]`` or uint8.
    attr_map : torch.Tensor or numpy.ndarray
        ``(1, H, W)`` channel-summed attribution map (:func:`attribution_map`).
    fov_mask : torch.Tensor or numpy.ndarray or None
        ``(1, H, W)`` boolean FOV mask: outside it the grey is dimmed by :data:`OUTSIDE_DIM`
        (attribution is drawn there as inside) and its border is drawn in :data:`BORDER_RGB`.
        ``None``: no FOV drawn.
    clip : float
        ``|a|`` at which the colour saturates; use :func:`cohort_clip_value` for the audit-wide scale or
        :func:`clip_value` per image. ``clip <= 0`` shows no colour.
    gamma : float
        ``alpha = clip(|a| / clip, 0, 1) ** gamma``; see the module docstring.
    dim : float
        Multiplier on the greyscale fundus, in ``[0, 1]``.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(3, H, W)`` uint8, a CPU tensor when ``image`` is a tensor, else an array.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim must be in [0, 1], got {dim}")
    rgb = _as_uint8_image(image).astype(np.float32) / 255.0
    a = _as_map(attr_map)
    if a.shape != rgb.shape[1:]:
        raise ValueError(
            f"attribution map shape {a.shape} does not match image shape {rgb.shape[1:]}"
        )
    grey = np.tensordot(_LUMA, rgb, axes=1) * dim
    m = _as_mask(fov_mask, a.shape)
    if m is not None:
        grey = np.where(m, grey, grey * OUTSIDE_DIM)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if clip > 0 and np.isfinite(clip):
        alpha = (np.clip(np.abs(a) / clip, 0.0, 1.0) ** gamma).astype(np.float32)
    else:
        alpha = np.zeros_like(grey)
    base = grey * (1.0 - alpha)
    out = np.stack([base, base, base])
    out[1] += np.where(a > 0, alpha, 0.0)
    out[0] += np.where(a < 0, alpha, 0.0)
    if m is not None:
        edge = fov_border(m)
        colour = np.asarray(BORDER_RGB, dtype=np.float32)[:, None]
        out[:, edge] = (1 - _BORDER_ALPHA) * out[:, edge] + _BORDER_ALPHA * colour
    result = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    return _like(result, image)


def fov_border(mask: np.ndarray) -> np.ndarray:
    """Boolean (H, W): pixels of ``mask`` with a 4-neighbour outside it (not the frame's edge).

    A field of view cut by the top of the frame gets no line along the frame.
    """
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, mode="edge")
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def side_by_side(
    image: ArrayLike,
    overlay: torch.Tensor | np.ndarray,
    gap: int = 8,
    gap_value: int = 255,
) -> ArrayLike:
    """Place the original image and its overlay next to each other.

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        ``(3, H, W)`` original, float in ``[0, 1]`` or uint8.
    overlay : torch.Tensor or numpy.ndarray
        ``(3, H, W)`` uint8 overlay (:func:`overlay`), same size.
    gap : int
        Width in pixels of the separating strip.
    gap_value : int
        Grey level of the strip (white by default, to match the PDF page).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(3, H, 2 W + gap)`` uint8, same kind as ``image``.
    """
    left, right = _as_uint8_image(image), _as_uint8_image(overlay)
    if left.shape != right.shape:
        raise ValueError(f"image {left.shape} and overlay {right.shape} differ in shape")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    strip = np.full((3, left.shape[1], gap), gap_value, dtype=np.uint8)
    return _like(np.concatenate([left, strip, right], axis=2), image)


def png_bytes(image: torch.Tensor | np.ndarray) -> bytes:
    """Encode a ``(3, H, W)`` uint8 (or float in ``[0, 1]``) image as PNG bytes."""
    hwc = np.ascontiguousarray(_as_uint8_image(image).transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(hwc, mode="RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(path: str | os.PathLike, image: torch.Tensor | np.ndarray) -> Path:
    """Write a ``(3, H, W)`` uint8 image as PNG, atomically (parent folders are created).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; a crash leaves either no file or a complete one.
    image : torch.Tensor or numpy.ndarray
        ``(3, H, W)`` uint8 (float in ``[0, 1]`` is accepted and quantised).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    data = png_bytes(image)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def legend_strip(
    width: int = 256,
    height: int = 16,
    grey: float = 0.5,
    gamma: float = DEFAULT_GAMMA,
    dim: float = DEFAULT_DIM,
) -> np.ndarray:
    """Colour bar of the overlay mapping, from ``-clip`` (left, red) through 0 (grey) to ``+clip`` (green).

    Drawn with :func:`overlay` itself, so the legend cannot drift from the images.

    Parameters
    ----------
    width, height : int
        Size in pixels.
    grey : float
        Fundus grey level (before dimming) shown under the colours.
    gamma, dim : float
        As in :func:`overlay`.

    Returns
    -------
    numpy.ndarray
        ``(3, height, width)`` uint8.
    """
    ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    attr = np.broadcast_to(ramp, (height, width))[None]
    background = np.full((3, height, width), grey, dtype=np.float32)
    return overlay(background, attr, None, clip=1.0, gamma=gamma, dim=dim)
