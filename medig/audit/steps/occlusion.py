# SPDX-License-Identifier: Apache-2.0
"""Batch step (``--cross-check occlusion``): Captum's Occlusion against IG on a patch grid."""
from __future__ import annotations

import math

from medig.audit.records import round_float
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.checks import occlusion_agreement
from medig.checks.deletion import faithfulness_output

__all__ = ["OcclusionCrossCheck"]


class OcclusionCrossCheck:
    """``occlusion_agreement``: Spearman of the occlusion and IG maps on a 16 x 16 patch grid."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.forward = faithfulness_output(ctx.model, ctx.settings.output)

    def __call__(self, batch: ImageBatch) -> None:
        result = occlusion_agreement(self.forward, batch.images,
                                     batch.explanation.attributions, batch.explanation.target,
                                     batch.fov)
        for fields, value in zip(batch.fields, result.agreement.tolist()):
            fields["occlusion_agreement"] = None if math.isnan(value) else round_float(value)
