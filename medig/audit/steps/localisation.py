# SPDX-License-Identifier: Apache-2.0
"""Batch step: pointing game and attribution mass on lesion masks, for images that have one."""
from __future__ import annotations

from medig.audit.localisation import localisation
from medig.audit.records import round_float
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.preprocess import crop_boxes

__all__ = ["Localisation"]


class Localisation:
    """``pointing_hit``, ``mask_mass_fraction`` and ``mask_area_fraction`` per masked image."""

    def __init__(self, ctx: AuditContext) -> None:
        self.size = ctx.plan.size
        self.dilation = ctx.settings.mask_dilation
        self.device = ctx.device

    def __call__(self, batch: ImageBatch) -> None:
        for j, mask in enumerate(batch.masks):
            if mask is None:
                continue
            lesion = crop_boxes(mask[None].to(self.device), batch.boxes[j:j + 1], self.size,
                                mode="nearest")[0].bool()
            figures = localisation(batch.maps[j], lesion, batch.fov[j], self.dilation)
            batch.fields[j].update({k: round_float(v) if isinstance(v, float) else v
                                    for k, v in figures.items()})
