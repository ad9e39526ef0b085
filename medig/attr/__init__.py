# SPDX-License-Identifier: Apache-2.0
"""Attribution core: Captum's Integrated Gradients with fundus baselines and completeness."""
from __future__ import annotations

from medig.attr.class_group import ClassGroup, GroupExplanation
from medig.attr.completeness import completeness_delta, is_complete, relative_error
from medig.attr.explanation import Explanation
from medig.attr.fundus_integrated_gradients import FundusIntegratedGradients
from medig.attr.normalization import NormalizedModel, with_normalization
from medig.attr.outputs import GroupProbability, explained_output

__all__ = [
    "ClassGroup",
    "Explanation",
    "FundusIntegratedGradients",
    "GroupExplanation",
    "GroupProbability",
    "NormalizedModel",
    "completeness_delta",
    "explained_output",
    "is_complete",
    "relative_error",
    "with_normalization",
]
