# SPDX-License-Identifier: Apache-2.0
"""Batch step: do the maps of the audit's baselines agree (:mod:`medig.checks.agreement`)?"""
from __future__ import annotations

import math

from medig.audit.records import round_float
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.checks import DEFAULT_CELL, TOPK_FRACTION, per_baseline_agreement

__all__ = ["BaselineAgreement"]


def _value(x: float) -> float | None:
    return None if math.isnan(x) else round_float(x)


class BaselineAgreement:
    """``baseline_agreement`` and ``baseline_topk_overlap`` from ``Explanation.per_baseline``
    (nothing recomputed); absent when the audit uses a single baseline."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        result = per_baseline_agreement(batch.explanation.per_baseline, batch.fov, DEFAULT_CELL,
                                        TOPK_FRACTION)
        if result is None:
            return
        agreement, overlap = (t.cpu().tolist() for t in result)
        for fields, a, o in zip(batch.fields, agreement, overlap):
            fields.update(baseline_agreement=_value(a), baseline_topk_overlap=_value(o))
