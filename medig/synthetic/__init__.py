# SPDX-License-Identifier: Apache-2.0
"""Synthetic fundus images with known truth, for training, tests and benchmarks.

- :mod:`medig.synthetic.fundus`: colour fundus photographs of diabetic retinopathy with
  pixel-exact lesion masks (:func:`generate`, re-exported here with the label rule), and where it
  drew the disc and fovea (:func:`geometry`);
- :mod:`medig.synthetic.shortcuts`: planted shortcuts (a corner stamp) for known-answer models;
- :mod:`medig.synthetic.degrade`: image-quality degradations of known severity (over- and
  under-exposure, defocus, small pupil, full-frame crop);
- :mod:`medig.synthetic.disk`: plain fundus-like disks of known centre and radius, for the tests
  of field-of-view detection.
"""
from __future__ import annotations

from medig.synthetic.fundus import MIN_LESION_FRACTION, generate, geometry, laterality, referable

__all__ = ["MIN_LESION_FRACTION", "generate", "geometry", "laterality", "referable"]
