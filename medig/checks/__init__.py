# SPDX-License-Identifier: Apache-2.0
"""Can the attribution be trusted? Checks of an Integrated Gradients map beyond completeness.

One check per module, importable without the audit (which calls them as steps):

- :func:`baseline_agreement`, :func:`baseline_topk_overlap` (:mod:`~medig.checks.agreement`): do
  the maps of two baselines rank the retina alike?
- :func:`deletion_curve` (:mod:`~medig.checks.deletion`): does the output fall faster when the
  pixels the map ranks highest are removed than when random pixels are?
- :func:`randomisation_test` (:mod:`~medig.checks.randomisation`): does the map change when the
  model's weights are randomised (Adebayo et al. 2018)?
- :func:`occlusion_agreement` (:mod:`~medig.checks.occlusion`): does occlusion rank the retina's
  regions like IG?

The checks that see the images (:func:`deletion_curve`, :func:`occlusion_agreement`,
:func:`randomisation_test` and :func:`image_checks`) find the field of view themselves by default
(``fov="auto"``: :func:`medig.preprocess.fov_mask`, the audit's detector), so that they give the
audit's verdict on fundus photographs; ``fov=None`` uses every pixel. The map-only functions
(:func:`baseline_agreement`, :func:`baseline_topk_overlap`, :func:`map_similarity`) cannot see
the images: pass them the field of view.

:func:`trust_flags` turns the figures into per-image flags with the thresholds of
:mod:`medig.checks.thresholds`, where every threshold is documented with the measurements that
chose it.
"""
from __future__ import annotations

from medig.checks import thresholds
from medig.checks.agreement import (
    DEFAULT_CELL,
    TOPK_FRACTION,
    baseline_agreement,
    baseline_topk_overlap,
    per_baseline_agreement,
)
from medig.checks.deletion import DeletionResult, deletion_curve
from medig.checks.evidence import outside_fov_share
from medig.checks.occlusion import OcclusionResult, occlusion_agreement
from medig.checks.per_image import (
    CHECK_COLUMNS,
    DELETION_SETTINGS,
    checks_manifest,
    image_checks,
    image_trust_flags,
)
from medig.checks.randomisation import (
    RandomisationResult,
    ig_explainer,
    map_similarity,
    model_stages,
    randomisation_test,
)
from medig.checks.verdicts import TRUST_FLAGS, trust_flags

__all__ = [
    "CHECK_COLUMNS",
    "DEFAULT_CELL",
    "DELETION_SETTINGS",
    "TOPK_FRACTION",
    "TRUST_FLAGS",
    "DeletionResult",
    "OcclusionResult",
    "RandomisationResult",
    "baseline_agreement",
    "baseline_topk_overlap",
    "checks_manifest",
    "deletion_curve",
    "ig_explainer",
    "image_checks",
    "image_trust_flags",
    "map_similarity",
    "model_stages",
    "occlusion_agreement",
    "outside_fov_share",
    "per_baseline_agreement",
    "randomisation_test",
    "thresholds",
    "trust_flags",
]
