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
        batch.explanation = self.ctx.ig.explain(
            batch.images, target=batch.target, completeness_tol=s.completeness_tol,
            max_steps=s.max_steps, method=s.method,
            completeness_atol=self.ctx.plan.completeness_atol, path_dtype=path_dtype(s.path_dtype),
            map_tol=s.map_tol)
        batch.maps = attribution_map(batch.explanation.attributions.detach())
