# SPDX-License-Identifier: Apache-2.0
"""Batch step: keep what the overlays and reports need (image, FOV, map) in the work store."""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor

from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.audit.store import output_name
from medig.utils import atomic_write
from medig.visualize import abs_quantiles, clip_value

__all__ = ["StoreArrays"]


class StoreArrays:
    """Store each image's arrays under its record key; ``--save-attributions`` writes the full
    attributions to ``attributions/<path>.npz`` as well."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        attributions = batch.explanation.attributions
        for j in range(len(batch)):
            self._store(batch, j, attributions[j])

    def _store(self, batch: ImageBatch, j: int, attributions: Tensor) -> None:
        s = self.ctx.settings
        amap = batch.maps[j].detach().float().cpu().numpy()
        scale = float(np.abs(amap).max()) or 1.0
        fov = batch.fov[j].cpu().numpy()
        image = batch.images[j]
        self.ctx.store.save_arrays(
            batch.keys[j], batch.frames[j] or 0,
            image=(image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(),
            fov=fov,
            attr_map=(amap / scale).astype(np.float16), attr_scale=np.float64(scale),
            sketch=abs_quantiles(amap, fov).astype(np.float32),
            clip=np.float64(clip_value(amap, fov, s.percentile)),
        )
        if s.save_attributions:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, attributions=attributions.detach().float().cpu().numpy(),
                                fov=fov)
            name = output_name(batch.inputs[j].rel, batch.frames[j])
            atomic_write(self.ctx.out_dir / "attributions" / f"{name}.npz", buffer.getvalue())
