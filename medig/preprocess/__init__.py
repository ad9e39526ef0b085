# SPDX-License-Identifier: Apache-2.0
"""GPU-batched fundus preprocessing in pure torch: field of view, cropping, Graham normalisation,
and the image-quality gate (:func:`assess_quality`).

The same code runs on CPU and CUDA and works on whole batches. Pixel-space outputs are in [0, 1];
mean/std normalisation belongs to the model wrapper (:func:`medig.with_normalization`).
Coordinates (circles, boxes) are continuous pixel coordinates, see :mod:`medig.preprocess.field_of_view`.
"""
from __future__ import annotations

from medig.preprocess.anatomy import REGIONS, Anatomy, find_anatomy
from medig.preprocess.crop import crop_boxes, crop_to_fov, fov_boxes
from medig.preprocess.field_of_view import FOV_SHAPES, FieldOfView, circle_mask
from medig.preprocess.fov_detection import detect_fov, detect_fov_circles, fov_circles, fov_mask
from medig.preprocess.graham import gaussian_blur_masked, graham
from medig.preprocess.pipeline import FundusPreprocess
from medig.preprocess.quality import QUALITY_FIELDS, QUALITY_LEVELS, QualityResult, assess_quality
from medig.preprocess.quality_thresholds import THRESHOLDS, QualityThresholds

__all__ = [
    "FOV_SHAPES",
    "QUALITY_FIELDS",
    "QUALITY_LEVELS",
    "REGIONS",
    "THRESHOLDS",
    "Anatomy",
    "FieldOfView",
    "FundusPreprocess",
    "QualityResult",
    "QualityThresholds",
    "assess_quality",
    "circle_mask",
    "crop_boxes",
    "crop_to_fov",
    "detect_fov",
    "detect_fov_circles",
    "find_anatomy",
    "fov_boxes",
    "fov_circles",
    "fov_mask",
    "gaussian_blur_masked",
    "graham",
]
