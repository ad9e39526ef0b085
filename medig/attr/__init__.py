# SPDX-License-Identifier: Apache-2.0
"""Attribution core: Captum's Integrated Gradients with fundus baselines and completeness."""
from __future__ import annotations

from medig.attr.completeness import completeness_delta, is_complete, relative_error
from medig.attr.explanation import Explanation
from medig.attr.fundus_integrated_gradients import FundusIntegratedGradients
from medig.attr.normalization import NormalizedModel, with_normalization

__all__ = [
    "Explanation",
    "FundusIntegratedGradients",
    "NormalizedModel",
    "completeness_delta",
    "is_complete",
    "relative_error",
    "with_normalization",
]
