# SPDX-License-Identifier: Apache-2.0
"""Batch step: the model's class probabilities and the class each image is explained for."""
from __future__ import annotations

import torch

from medig.audit.steps.batch import AuditContext, ImageBatch

__all__ = ["Predict"]


class Predict:
    """``probs`` (float64 softmax of the logits) and ``target`` (fixed class or the predicted one)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        with torch.no_grad():
            batch.probs = torch.softmax(self.ctx.model(batch.images).double(), dim=1)
        if self.ctx.target is None:
            batch.target = batch.probs.argmax(dim=1)
        else:
            batch.target = torch.full((len(batch),), self.ctx.target, dtype=torch.long,
                                      device=batch.probs.device)
