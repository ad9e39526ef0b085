# SPDX-License-Identifier: Apache-2.0
"""Batch step: each image's ``trust_flags`` from completeness and the checks' figures."""
from __future__ import annotations

from medig.audit.steps.agreement import BaselineAgreement
from medig.audit.steps.batch import AuditContext, BatchStep, ImageBatch
from medig.audit.steps.faithfulness import Faithfulness
from medig.audit.steps.occlusion import OcclusionCrossCheck
from medig.checks import trust_flags

__all__ = ["TrustFlags", "trust_steps"]


def trust_steps(ctx: AuditContext) -> list[BatchStep]:
    """The per-image trust checks (after ``Explain``) and the verdict of each image, for the
    audit's settings: agreement and faithfulness unless ``trust_checks`` is off, the occlusion
    cross-check with ``--cross-check occlusion``, then :class:`TrustFlags`."""
    s = ctx.settings
    steps: list[BatchStep] = [BaselineAgreement(ctx), Faithfulness(ctx)] if s.trust_checks else []
    if "occlusion" in s.cross_check:
        steps.append(OcclusionCrossCheck(ctx))
    return [*steps, TrustFlags(ctx)]


class TrustFlags:
    """``trust_flags``: "incomplete", "baseline-dependent", "not-faithful" (see
    :func:`medig.checks.trust_flags`); ``flagged`` keeps its meaning (completeness only)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        flagged = batch.explanation.flagged.cpu().tolist()
        for fields, incomplete in zip(batch.fields, flagged):
            fields["trust_flags"] = trust_flags(incomplete, fields.get("baseline_agreement"),
                                                fields.get("faithfulness"))
