# SPDX-License-Identifier: Apache-2.0
"""Batch step: Integrated Gradients with per-image steps until completeness and map accuracy hold."""
from __future__ import annotations

from medig.attr.precision import path_dtype
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.visualize import attribution_map

__all__ = ["Explain"]


class Explain:
    """``explanation`` (:meth:`FundusIntegratedGradients.explain`) and the channel-summed ``maps``."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        s = self.ctx.settings
        atol = self.ctx.plan.completeness_atol
        assert batch.images is not None and atol is not None  # Preprocess ran; a resolved plan
        explanation = self.ctx.ig.explain(
            batch.images, target=batch.target, completeness_tol=s.completeness_tol,
            max_steps=s.max_steps, method=s.method,
            completeness_atol=atol, path_dtype=path_dtype(s.path_dtype), map_tol=s.map_tol)
        batch.explanation = explanation
        batch.maps = attribution_map(explanation.attributions.detach())
