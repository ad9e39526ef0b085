# SPDX-License-Identifier: Apache-2.0
"""Pictures of attributions: green/red overlays on the dimmed fundus, their colour scale (per image
or pooled over a cohort), side-by-side panels, the legend strip and PNG output.

Everything lives in :mod:`medig.visualize.overlays` (plural, so that the module is not hidden by
the function :func:`overlay` re-exported here).
"""
from __future__ import annotations

from medig.visualize.overlays import (
    BORDER_RGB,
    DEFAULT_DIM,
    DEFAULT_GAMMA,
    DEFAULT_PERCENTILE,
    OUTSIDE_DIM,
    abs_quantiles,
    attribution_map,
    clip_value,
    cohort_clip_value,
    fov_border,
    legend_strip,
    overlay,
    png_bytes,
    save_png,
    side_by_side,
)

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
