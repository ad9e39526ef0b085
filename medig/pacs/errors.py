# SPDX-License-Identifier: Apache-2.0
"""How an audit's DICOM output can end incomplete (``medig audit`` exits with 4 on either)."""
from __future__ import annotations

from medig.audit.errors import AuditError

__all__ = ["DicomIncomplete", "SendIncomplete"]


class DicomIncomplete(AuditError):
    """The audit finished (results, overlays, report) but some of its DICOM objects could not be
    made or written, or were not acknowledged by the PACS. The message names what and why."""


class SendIncomplete(DicomIncomplete):
    """The audit finished but some DICOM objects were not acknowledged by the PACS."""
