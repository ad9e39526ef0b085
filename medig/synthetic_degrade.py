# SPDX-License-Identifier: Apache-2.0
"""Deprecated: the degradations are :mod:`medig.synthetic.degrade`; this path goes in the next
release."""
from __future__ import annotations

from medig._deprecation import warn_moved
from medig.synthetic.degrade import (
    DEGRADATIONS,
    NORMAL_EXPOSURE,
    PUPIL_HAZE,
    SEVERITIES,
    defocus,
    degrade,
    full_frame_crop,
    over_expose,
    small_pupil,
    under_expose,
)

__all__ = ["DEGRADATIONS", "NORMAL_EXPOSURE", "PUPIL_HAZE", "SEVERITIES", "defocus", "degrade",
           "full_frame_crop", "over_expose", "small_pupil", "under_expose"]

warn_moved("medig.synthetic_degrade", "medig.synthetic.degrade")
