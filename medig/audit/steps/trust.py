# SPDX-License-Identifier: Apache-2.0
"""Batch step: the per-image trust checks (:func:`medig.checks.image_checks`) and ``trust_flags``."""
from __future__ import annotations

import math

from medig.audit.records import round_float
from medig.audit.steps.batch import AuditContext, BatchStep, ImageBatch
from medig.checks import image_checks, outside_fov_share, trust_flags
from medig.checks.deletion import faithfulness_output

__all__ = ["OutsideEvidence", "TrustChecks", "trust_steps"]


def trust_steps(ctx: AuditContext) -> list[BatchStep]:
    """The trust checks after ``Explain``: :class:`OutsideEvidence`, then :class:`TrustChecks`."""
    return [OutsideEvidence(), TrustChecks(ctx)]


class OutsideEvidence:
    """Per image: ``outside_fov_share``, the share of ``|attribution|`` outside the field of view
    (:func:`medig.checks.outside_fov_share`); :class:`TrustChecks` turns it into the flag
    "evidence-outside-retina"."""

    def __call__(self, batch: ImageBatch) -> None:
        assert batch.maps is not None and batch.fov is not None  # Preprocess and Explain ran
        shares = outside_fov_share(batch.maps, batch.fov).cpu().tolist()
        for fields, share in zip(batch.fields, shares):
            fields["outside_fov_share"] = None if math.isnan(share) else round_float(share)


class TrustChecks:
    """Per image, unless ``trust_checks`` is off: ``baseline_agreement`` and
    ``baseline_topk_overlap`` (from ``Explanation.per_baseline``, nothing recomputed), the deletion
    check's ``faithfulness``, ``deletion_auc`` and ``random_deletion_auc`` (forward passes on the
    log-odds of the explained probability); ``occlusion_agreement`` with ``--cross-check
    occlusion``; then always ``trust_flags`` ("incomplete", "baseline-dependent",
    "not-faithful", "evidence-outside-retina", see :func:`medig.checks.trust_flags`) from the
    stored, rounded figures.
    ``flagged`` keeps its meaning (completeness only)."""

    def __init__(self, ctx: AuditContext) -> None:
        s = ctx.settings
        self.checks = bool(s.trust_checks)
        self.occlusion = "occlusion" in s.cross_check
        self.forward = faithfulness_output(ctx.model, s.output)

    def __call__(self, batch: ImageBatch) -> None:
        expl = batch.explanation
        assert expl is not None and batch.images is not None  # Preprocess and Explain ran
        if self.checks or self.occlusion:
            columns = image_checks(self.forward, batch.images, expl, batch.fov,
                                   agreement=self.checks, faithfulness=self.checks,
                                   occlusion=self.occlusion)
            for name, values in columns.items():
                for fields, value in zip(batch.fields, values.tolist()):
                    fields[name] = None if math.isnan(value) else round_float(value)
        for fields, incomplete in zip(batch.fields, expl.flagged.cpu().tolist()):
            fields["trust_flags"] = trust_flags(
                incomplete, fields.get("baseline_agreement"), fields.get("faithfulness"),
                outside_fov_share=fields.get("outside_fov_share"))
