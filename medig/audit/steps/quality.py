# SPDX-License-Identifier: Apache-2.0
"""Batch step: the image-quality gate (``--quality flag | skip | off``), and the audit step that
counts its verdicts into ``manifest.json``.

The verdicts come with preprocessing (:class:`~medig.audit.steps.preprocess.Preprocess` asks
:class:`~medig.preprocess.FundusPreprocess` for them, from the same field of view); this step
decides what they do. ``flag`` (the default): every image is still explained and its row carries
the verdict and the measures. ``skip``: images that are not gradeable leave the batch before
prediction with a row of status ``"skipped"`` (not an error: the exit code is unchanged).
"""
from __future__ import annotations

from medig.audit.finalise import FinishedAudit
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.report.quality import quality_counts

__all__ = ["QUALITY_MODES", "Quality", "QualitySummary"]

#: Values of ``--quality``.
QUALITY_MODES = ("flag", "skip", "off")


class Quality:
    """Put each image's quality verdict and measures in its row; with ``skip``, take the
    images that are not gradeable out of the batch (status ``"skipped"``)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.mode = ctx.settings.quality
        if self.mode not in QUALITY_MODES:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_MODES)}, "
                             f"got {self.mode!r}")

    def __call__(self, batch: ImageBatch) -> None:
        if self.mode == "off" or batch.quality is None:
            return
        for fields, verdict in zip(batch.fields, batch.quality):
            fields.update(verdict)
        if self.mode == "skip":
            gone = [j for j, v in enumerate(batch.quality) if v["quality"] != "gradeable"]
            if gone:
                batch.drop(gone, [{"status": "skipped", "error": None} for _ in gone])


class QualitySummary:
    """Audit step: the mode and the counts of the verdicts, in ``manifest.json``."""

    def __call__(self, audit: FinishedAudit) -> None:
        audit.manifest["quality"] = {"mode": audit.settings.quality,
                                     **quality_counts(audit.rows)}
