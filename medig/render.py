# SPDX-License-Identifier: Apache-2.0
"""Deprecated: overlays and colour scales are :mod:`medig.visualize`; this path goes in the next
release."""
from __future__ import annotations

from medig._deprecation import warn_moved
from medig.visualize.overlays import (
    DEFAULT_DIM,
    DEFAULT_GAMMA,
    DEFAULT_PERCENTILE,
    abs_quantiles,
    attribution_map,
    clip_value,
    cohort_clip_value,
    legend_strip,
    overlay,
    png_bytes,
    save_png,
    side_by_side,
)

__all__ = [
    "DEFAULT_DIM",
    "DEFAULT_GAMMA",
    "DEFAULT_PERCENTILE",
    "abs_quantiles",
    "attribution_map",
    "clip_value",
    "cohort_clip_value",
    "legend_strip",
    "overlay",
    "png_bytes",
    "save_png",
    "side_by_side",
]

warn_moved("medig.render", "medig.visualize")
