# SPDX-License-Identifier: Apache-2.0
"""The steps of an audit, in the order they run.

Batch steps (:class:`~medig.audit.steps.batch.BatchStep`) run on every batch of images, one after
the other: io has decoded the files; preprocessing, prediction, explanation and the per-image
checks each add to the :class:`~medig.audit.steps.batch.ImageBatch`; the last step stores the
arrays. Audit steps (:class:`~medig.audit.finalise.AuditStep`) run once per audit on rank 0,
after every input is stored: before the results and report are written (they may add to the
manifest) or after (outputs derived from the report). A new capability is a new step here, not a
branch in the pipeline.
"""
from __future__ import annotations

from medig.audit.finalise import AuditStep
from medig.audit.settings import AuditSettings
from medig.audit.steps.arrays import StoreArrays
from medig.audit.steps.batch import AuditContext, BatchStep, ImageBatch
from medig.audit.steps.completeness import RecordCompletenessRule
from medig.audit.steps.explain import Explain
from medig.audit.steps.localisation import Localisation
from medig.audit.steps.predict import Predict
from medig.audit.steps.preprocess import Laterality, Preprocess

__all__ = ["AuditContext", "BatchStep", "ImageBatch", "audit_steps", "batch_steps"]


def batch_steps(ctx: AuditContext) -> list[BatchStep]:
    """The steps every batch goes through, for the audit's settings."""
    return [
        Preprocess(ctx),
        Laterality(),
        Predict(ctx),
        Explain(ctx),
        Localisation(ctx),
        StoreArrays(ctx),
    ]


def audit_steps(settings: AuditSettings) -> tuple[list[AuditStep], list[AuditStep]]:
    """Steps run once per audit: (before the results and report are written, after)."""
    return [RecordCompletenessRule()], []
