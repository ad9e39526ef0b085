# SPDX-License-Identifier: Apache-2.0
"""Deprecated: :mod:`medig.preprocess.field_of_view` (the type and its geometry) and
:mod:`medig.preprocess.fov_detection` (the detection); this path goes in the next release."""
from __future__ import annotations

from medig._deprecation import warn_moved
from medig.preprocess.field_of_view import FOV_SHAPES, FieldOfView, circle_mask
from medig.preprocess.fov_detection import (
    WORK_SIZE,
    detect_fov,
    detect_fov_circles,
    fov_circles,
    fov_mask,
)

__all__ = ["FOV_SHAPES", "WORK_SIZE", "FieldOfView", "circle_mask", "detect_fov",
           "detect_fov_circles", "fov_circles", "fov_mask"]

warn_moved("medig.preprocess.fov",
           "medig.preprocess.field_of_view or medig.preprocess.fov_detection")
