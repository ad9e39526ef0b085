# SPDX-License-Identifier: Apache-2.0
"""Audit step (after the report): ``studies/<study>.pdf``, one page per study
(:func:`medig.report.per_study.build_study_pages`), with ``--per-study`` or DICOM output."""
from __future__ import annotations

from medig.audit.finalise import AuditSummary, FinishedAudit
from medig.audit.settings import AuditSettings

__all__ = ["StudyPages"]


class StudyPages:
    """``studies/<study>.pdf`` when the settings ask for study pages (``--per-study``, implied by
    ``--dicom-out`` and ``--send``: the Encapsulated PDF is the study's page)."""

    def __call__(self, audit: FinishedAudit) -> None:
        if not audit.settings.wants_study_pages:
            return
        from medig.report.per_study import build_study_pages

        build_study_pages(audit.out_dir, audit.settings.template)

    def console_lines(self, summary: AuditSummary, settings: AuditSettings) -> list[str]:
        return [f"study pages: {summary.out_dir / 'studies'}"] if settings.wants_study_pages else []
