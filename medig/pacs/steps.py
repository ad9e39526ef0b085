# SPDX-License-Identifier: Apache-2.0
"""The "after" audit steps of per-study pages, DICOM output and sending, for the settings."""
from __future__ import annotations

from medig.audit.finalise import AuditStep, FinishedAudit
from medig.audit.settings import AuditSettings
from medig.pacs.errors import DicomIncomplete, SendIncomplete

__all__ = ["DicomExport", "DicomIncomplete", "SendDicom", "SendIncomplete", "StudyPages",
           "pacs_steps"]


def _not_made(failed: list[str]) -> str:
    """The sources without objects, in one sentence (each has had its own line)."""
    return (f"{len(failed)} source(s) or study page(s) got no DICOM objects (see the lines "
            "above); the others' objects are written")


class StudyPages:
    """``studies/<study>.pdf`` (:func:`medig.report.per_study.build_study_pages`)."""

    def __call__(self, audit: FinishedAudit) -> None:
        from medig.report.per_study import build_study_pages

        build_study_pages(audit.out_dir, audit.settings.template)


class DicomExport:
    """``dicom/``: Secondary Captures and Encapsulated PDFs (:func:`medig.pacs.export.export_dicom`).

    Sources whose objects cannot be made do not stop the step; it raises
    :class:`DicomIncomplete` for them at its end, unless ``last`` is False (sending follows, and
    sends the objects that were made before it reports them).
    """

    def __init__(self, last: bool = True) -> None:
        self.last = last
        self.failed: list[str] = []

    def __call__(self, audit: FinishedAudit) -> None:
        from medig.pacs.export import export_dicom

        self.failed = export_dicom(audit).failed
        if self.last and self.failed:
            raise DicomIncomplete(_not_made(self.failed))


class SendDicom:
    """C-STORE of ``dicom/`` to ``--send`` (:func:`medig.pacs.send.send_objects`); reports the
    objects the export could not make (``export``) with those the PACS did not acknowledge."""

    def __init__(self, export: DicomExport | None = None) -> None:
        self.export = export

    def __call__(self, audit: FinishedAudit) -> None:
        from medig.pacs.export import DICOM_FOLDER, dicom_objects
        from medig.pacs.send import parse_destination, send_objects

        destination = parse_destination(audit.settings.send or "")
        result = send_objects(dicom_objects(audit.out_dir), audit.out_dir / DICOM_FOLDER,
                              destination, audit.settings.calling_aet)
        not_made = self.export.failed if self.export is not None else []
        if not result.complete:
            also = f"; {_not_made(not_made)}" if not_made else ""
            raise SendIncomplete(
                f"{len(result.failed)} DICOM object(s) not acknowledged by {destination} "
                f"({result.failed[0]}{', ...' if len(result.failed) > 1 else ''}); they stay in "
                f"{audit.out_dir / DICOM_FOLDER} and the next run sends them{also}")
        if not_made:
            raise DicomIncomplete(f"{_not_made(not_made)} and sent to {destination}")


def pacs_steps(settings: AuditSettings) -> list[AuditStep]:
    """The after-steps the settings ask for: pages, then DICOM objects, then sending.

    ``--send`` implies ``--dicom-out``, which implies ``--per-study`` (the Encapsulated PDF is the
    study's page).
    """
    steps: list[AuditStep] = []
    if settings.wants_study_pages:
        steps.append(StudyPages())
    export = None
    if settings.wants_dicom:
        export = DicomExport(last=not settings.send)
        steps.append(export)
    if settings.send:
        steps.append(SendDicom(export))
    return steps
