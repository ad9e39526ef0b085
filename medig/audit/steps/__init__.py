# SPDX-License-Identifier: Apache-2.0
"""The steps of an audit, in the order they run.

A file here is an adapter; its logic lives in a domain package. A step reads the audit's plan
and batch, calls :mod:`medig.preprocess`, :mod:`medig.attr`, :mod:`medig.checks`,
:mod:`medig.report` or another domain module, and records what it returns; a computation worth a
test of its own belongs there, not here.

Batch steps (:class:`~medig.audit.steps.batch.BatchStep`) run on every batch of images, one after
the other: io has decoded the files; preprocessing, prediction, explanation and the per-image
checks each add to the :class:`~medig.audit.steps.batch.ImageBatch`; the last step stores the
arrays. Audit steps (:class:`~medig.audit.finalise.AuditStep`) run once per audit on rank 0,
after every input is stored: before the results and report are written (they may add to the
manifest) or after (outputs derived from the report). A new capability is a new step here, not a
branch in the pipeline. Steps of a package above the audit (the DICOM output and sending of
:mod:`medig.pacs`) are composed by the caller: ``run_audit(..., extra_steps=...)``; each such
step checks its own options and says its own console line (see
:class:`~medig.audit.finalise.AuditStep`).
"""
from __future__ import annotations

from collections.abc import Sequence

from medig.audit.finalise import AuditStep
from medig.audit.settings import AuditSettings
from medig.audit.steps.arrays import NameAttributions, StoreArrays
from medig.audit.steps.batch import AuditContext, BatchStep, ImageBatch
from medig.audit.steps.completeness import RecordCompletenessRule
from medig.audit.steps.explain import Explain
from medig.audit.steps.findings import Findings
from medig.audit.steps.localisation import Localise
from medig.audit.steps.predict import Predict
from medig.audit.steps.preprocess import Laterality, Preprocess
from medig.audit.steps.quality import Quality, QualitySummary
from medig.audit.steps.regions import RegionEvidence
from medig.audit.steps.sanity import SanityCheck
from medig.audit.steps.study import IdentifyRows, StudyIdentity
from medig.audit.steps.study_pages import StudyPages
from medig.audit.steps.target import RecordTarget
from medig.audit.steps.trust import trust_steps

__all__ = ["AuditContext", "BatchStep", "ImageBatch", "audit_steps", "batch_steps"]


def batch_steps(ctx: AuditContext) -> list[BatchStep]:
    """The steps every batch goes through, for the audit's settings."""
    return [
        Preprocess(ctx),
        Laterality(),
        StudyIdentity(ctx),  # DICOM study id (keyed hash) and eye: content only
        Quality(ctx),  # gradeable / ungradeable / not fundus; --quality skip drops the latter two
        Predict(ctx),
        Explain(ctx),
        RegionEvidence(),  # anatomy, and the share of evidence on each region
        *trust_steps(ctx),  # per-image trust checks and flags
        StoreArrays(ctx),
    ]


def audit_steps(settings: AuditSettings, extra: Sequence[AuditStep] = (),
                ) -> tuple[list[AuditStep], list[AuditStep]]:
    """Steps run once per audit: (before the results and report are written, after).

    ``extra`` are the caller's steps (e.g. :func:`medig.pacs.steps.pacs_steps`), run after the
    audit's own after steps.
    """
    before: list[AuditStep] = [
        RecordTarget(),  # what the colours mean, where the model's metadata came from
        RecordCompletenessRule(),  # the rule's absolute floor, in the manifest and the report
        IdentifyRows(),  # study and eye of every row, from its own name unless DICOM
        Localise(),  # lesion-mask figures from the stored maps and today's masks
        NameAttributions(),  # --save-attributions files for names that share stored work
        SanityCheck(),  # model-randomisation check on a sample; records the trust thresholds
        Findings(),  # what the model relies on across the cohort (outside-retina, ...)
    ]
    if settings.quality != "off":
        before.append(QualitySummary())  # gradeable / ungradeable / not-fundus counts
    after: list[AuditStep] = [
        StudyPages(),  # per-study pages: --per-study, implied by DICOM output
        *extra,
    ]
    return before, after
