# SPDX-License-Identifier: Apache-2.0
"""Batch step: the model's class probabilities and the class (or group) each image is explained for."""
from __future__ import annotations

import torch

from medig.attr.class_group import ClassGroup
from medig.audit.steps.batch import AuditContext, ImageBatch

__all__ = ["Predict"]


class Predict:
    """``probs`` (float64 softmax of the logits) and ``target`` (fixed class or the predicted one).

    For a class group the explained forward returns ``P(group)`` as its only column, so
    ``target`` is 0 for every image (an index into ``ctx.forward``'s output, as always), and the
    result fields name the group and its member classes instead of a single class.
    """

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        group = ctx.target if isinstance(ctx.target, ClassGroup) else None
        self.group_fields = None if group is None else {
            "target": group.name, "target_index": None,
            "target_members": group.member_names(ctx.class_names)}

    def __call__(self, batch: ImageBatch) -> None:
        with torch.no_grad():
            batch.probs = torch.softmax(self.ctx.model(batch.images).double(), dim=1)
        if self.group_fields is not None:
            batch.target = torch.zeros(len(batch), dtype=torch.long, device=batch.probs.device)
            for fields in batch.fields:
                fields.update(self.group_fields)
        elif self.ctx.target is None:
            batch.target = batch.probs.argmax(dim=1)
        else:
            target = self.ctx.target
            assert isinstance(target, int)  # a class index: a group has group_fields
            batch.target = torch.full((len(batch),), target, dtype=torch.long,
                                      device=batch.probs.device)
