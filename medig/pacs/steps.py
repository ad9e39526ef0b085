# SPDX-License-Identifier: Apache-2.0
"""The "after" audit steps of per-study pages, DICOM output and sending, for the settings."""
from __future__ import annotations

from medig.audit.errors import AuditError
from medig.audit.finalise import AuditStep, FinishedAudit
from medig.audit.settings import AuditSettings

__all__ = ["DicomExport", "SendDicom", "SendIncomplete", "StudyPages", "pacs_steps"]


class SendIncomplete(AuditError):
    """The audit finished but some DICOM objects were not acknowledged by the PACS."""


class StudyPages:
    """``studies/<study>.pdf`` (:func:`medig.report.per_study.build_study_pages`)."""

    def __call__(self, audit: FinishedAudit) -> None:
        from medig.report.per_study import build_study_pages

        build_study_pages(audit.out_dir, audit.settings.template)


class DicomExport:
    """``dicom/``: Secondary Captures and Encapsulated PDFs (:func:`medig.pacs.export.export_dicom`)."""

    def __call__(self, audit: FinishedAudit) -> None:
        from medig.pacs.export import export_dicom

        export_dicom(audit)


class SendDicom:
    """C-STORE of ``dicom/`` to ``--send`` (:func:`medig.pacs.send.send_objects`)."""

    def __call__(self, audit: FinishedAudit) -> None:
        from medig.pacs.export import DICOM_FOLDER, dicom_objects
        from medig.pacs.send import parse_destination, send_objects

        destination = parse_destination(audit.settings.send or "")
        result = send_objects(dicom_objects(audit.out_dir), audit.out_dir / DICOM_FOLDER,
                              destination, audit.settings.calling_aet)
        if not result.complete:
            raise SendIncomplete(
                f"{len(result.failed)} DICOM object(s) not acknowledged by {destination} "
                f"({result.failed[0]}{', ...' if len(result.failed) > 1 else ''}); they stay in "
                f"{audit.out_dir / DICOM_FOLDER} and the next run sends them")


def pacs_steps(settings: AuditSettings) -> list[AuditStep]:
    """The after-steps the settings ask for: pages, then DICOM objects, then sending.

    ``--send`` implies ``--dicom-out``, which implies ``--per-study`` (the Encapsulated PDF is the
    study's page).
    """
    steps: list[AuditStep] = []
    if settings.wants_study_pages:
        steps.append(StudyPages())
    if settings.wants_dicom:
        steps.append(DicomExport())
    if settings.send:
        steps.append(SendDicom())
    return steps
