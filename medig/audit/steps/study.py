# SPDX-License-Identifier: Apache-2.0
"""Study and eye of each image: the ``study``, ``study_source``, ``laterality`` and
``laterality_source`` result fields (see :mod:`medig.audit.study`).

The work store is keyed by a file's bytes, so only what the bytes say is stored with it:
:class:`StudyIdentity`, a batch step (after :class:`~medig.audit.steps.preprocess.Laterality`,
whose DICOM laterality it keeps), adds the DICOM study and eye. :class:`IdentifyRows`, a "before"
audit step, completes every final row from its own name (file-name laterality hints, studies
grouped by name), so that two names with the same bytes never share what their names say; it also
reads the header of files that could not be decoded (it may still name the study).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from medig.audit.finalise import FinishedAudit
from medig.audit.inputs import AuditInput
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.audit.store import parse_row_path
from medig.audit.study import audit_secret, dicom_identity, row_identity
from medig.io.dicom_ids import DicomIds, read_dicom_ids
from medig.report.rows import ResultRow

__all__ = ["IdentifyRows", "StudyIdentity"]


class StudyIdentity:
    """Adds the DICOM study and eye fields (content, never the name) to every image of the batch."""

    def __init__(self, ctx: AuditContext) -> None:
        self.secret = audit_secret(ctx.out_dir)
        # The frames of a multi-frame file are consecutive (and may span batches): its header is
        # read once, for the first of them.
        self._last: tuple[str, DicomIds | None] | None = None

    def _ids(self, item: AuditInput) -> DicomIds | None:
        if self._last is None or self._last[0] != item.rel:
            self._last = (item.rel, read_dicom_ids(item.path))
        return self._last[1]

    def __call__(self, batch: ImageBatch) -> None:
        for item, metadata, fields in zip(batch.inputs, batch.metadata, batch.fields):
            ids = self._ids(item) if metadata.get("format") == "dicom" else None
            fields.update(dicom_identity(self.secret, ids, fields.get("laterality")))


class IdentifyRows:
    """Fills the study and eye fields of every final row: stored DICOM identity, else the row's
    own name; the header of a file that has an error row is read here."""

    def __call__(self, audit: FinishedAudit) -> None:
        if not audit.rows:
            return
        secret = audit_secret(audit.out_dir)
        path_of = {it.rel: it.path for it in audit.items}
        ids_of: dict[str, DicomIds | None] = {}  # one read per file, not per frame row
        for row in audit.rows:
            rel = parse_row_path(str(row["path"]))[0]
            stored: Mapping[str, Any] = row
            if row.get("status") == "error":
                if rel not in ids_of:
                    path = path_of.get(rel)
                    ids_of[rel] = read_dicom_ids(path) if path is not None else None
                stored = dicom_identity(secret, ids_of[rel])
            row.update(cast(ResultRow, row_identity(secret, rel, stored)))  # IDENTITY_FIELDS
