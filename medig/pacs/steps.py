# SPDX-License-Identifier: Apache-2.0
"""The after steps of DICOM output and sending, composed by the caller of the audit.

``medig audit`` passes :func:`pacs_steps` to :func:`medig.audit.run_audit` (``extra_steps``).
Each step owns its options: it checks them before anything is loaded (``problem``), acts only when
they ask for it, and says its own console line (``console_lines``). ``--send`` implies
``--dicom-out``, which implies the audit's per-study pages (the Encapsulated PDF is the study's
page).
"""
from __future__ import annotations

from medig.audit.finalise import AuditStep, AuditSummary, FinishedAudit
from medig.audit.settings import AuditSettings
from medig.pacs.errors import DicomIncomplete, SendIncomplete

__all__ = ["DicomExport", "DicomIncomplete", "SendDicom", "SendIncomplete", "pacs_steps"]


def _not_made(failed: list[str]) -> str:
    """The sources without objects, in one sentence (each has had its own line)."""
    return (f"{len(failed)} source(s) or study page(s) got no DICOM objects (see the lines "
            "above); the others' objects are written")


class DicomExport:
    """``dicom/``: Secondary Captures and Encapsulated PDFs (:func:`medig.pacs.export.export_dicom`).

    Sources whose objects cannot be made do not stop the step; it raises
    :class:`DicomIncomplete` for them at its end, unless ``--send`` follows (sending sends the
    objects that were made, then reports them).
    """

    def __init__(self) -> None:
        self.failed: list[str] = []

    def problem(self, settings: AuditSettings) -> str | None:
        if settings.wants_dicom and not settings.include_phi:
            return ("--dicom-out and --send need --include-phi: a DICOM object is filed under the "
                    "patient's identity, copied from the source image")
        return None

    def __call__(self, audit: FinishedAudit) -> None:
        if not audit.settings.wants_dicom:
            return
        from medig.pacs.export import export_dicom

        self.failed = export_dicom(audit).failed
        if self.failed and not audit.settings.send:
            raise DicomIncomplete(_not_made(self.failed))

    def console_lines(self, summary: AuditSummary, settings: AuditSettings) -> list[str]:
        if not settings.wants_dicom:
            return []
        from medig.pacs.export import DICOM_FOLDER, dicom_objects

        out = summary.out_dir
        return [f"dicom: {len(dicom_objects(out))} objects in {out / DICOM_FOLDER}"]


class SendDicom:
    """C-STORE of ``dicom/`` to ``--send`` (:func:`medig.pacs.send.send_objects`); reports the
    objects the export could not make (``export``) with those the PACS did not acknowledge."""

    def __init__(self, export: DicomExport | None = None) -> None:
        self.export = export

    def problem(self, settings: AuditSettings) -> str | None:
        from medig.pacs.send import check_aet, parse_destination

        try:
            if settings.send:
                parse_destination(settings.send)
            check_aet(settings.calling_aet, "--calling-aet")
        except ValueError as error:
            return str(error)
        return None

    def __call__(self, audit: FinishedAudit) -> None:
        if not audit.settings.send:
            return
        from medig.pacs.export import DICOM_FOLDER, dicom_objects
        from medig.pacs.send import parse_destination, send_objects

        destination = parse_destination(audit.settings.send)
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

    def console_lines(self, summary: AuditSummary, settings: AuditSettings) -> list[str]:
        if not settings.send:
            return []
        from medig.pacs.export import DICOM_FOLDER

        return [(f"sent: every DICOM object acknowledged by {settings.send} "
                 f"(log: {summary.out_dir / DICOM_FOLDER / 'sent.jsonl'})")]


def pacs_steps() -> list[AuditStep]:
    """The DICOM steps, in order: objects, then sending (each acts when its options ask)."""
    export = DicomExport()
    return [export, SendDicom(export)]
