# SPDX-License-Identifier: Apache-2.0
"""Batch step: deletion curve of each map against random orders (:mod:`medig.checks.deletion`)."""
from __future__ import annotations

import math

from medig.audit.records import round_float
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.checks import DELETION_SETTINGS, deletion_curve
from medig.checks.deletion import faithfulness_output

__all__ = ["Faithfulness"]


def _value(x: float) -> float | None:
    return None if math.isnan(x) else round_float(x)


class Faithfulness:
    """``faithfulness``, ``deletion_auc`` and ``random_deletion_auc`` of the explained output
    (its log-odds for the probability; forward passes only, the whole batch at once)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.forward = faithfulness_output(ctx.model, ctx.settings.output)

    def __call__(self, batch: ImageBatch) -> None:
        result = deletion_curve(self.forward, batch.images, batch.explanation.attributions,
                                batch.explanation.target, batch.fov, **DELETION_SETTINGS)
        columns = zip(result.faithfulness.tolist(), result.auc.tolist(),
                      result.random_auc.tolist())
        for fields, (f, auc, random_auc) in zip(batch.fields, columns):
            fields.update(faithfulness=_value(f), deletion_auc=_value(auc),
                          random_deletion_auc=_value(random_auc))
