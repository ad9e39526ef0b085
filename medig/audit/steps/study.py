# SPDX-License-Identifier: Apache-2.0
"""Study and eye of each image: the ``study``, ``study_source``, ``laterality`` and
``laterality_source`` result fields (see :mod:`medig.audit.study`).

:class:`StudyIdentity` is a batch step (after :class:`~medig.audit.steps.preprocess.Laterality`,
whose DICOM laterality it keeps); :class:`IdentifyRemainingRows` is a "before" audit step that
gives the same fields to rows no batch step saw: files that could not be decoded (their header
may still name the study) and work stored by an older medig.
"""
from __future__ import annotations

from medig.audit.finalise import FinishedAudit
from medig.audit.inputs import AuditInput
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.audit.store import parse_row_path
from medig.audit.study import audit_secret, study_fields
from medig.io.dicom_ids import DicomIds, read_dicom_ids

__all__ = ["IdentifyRemainingRows", "StudyIdentity"]


class StudyIdentity:
    """Adds the study and eye fields to every image of the batch."""

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
            fields.update(study_fields(self.secret, item.rel, ids, fields.get("laterality")))


class IdentifyRemainingRows:
    """Fills the study and eye fields of final rows that lack them (read errors, old work)."""

    def __call__(self, audit: FinishedAudit) -> None:
        missing = [r for r in audit.rows if not r.get("study")]
        if not missing:
            return
        secret = audit_secret(audit.out_dir)
        path_of = {it.rel: it.path for it in audit.items}
        ids_of: dict[str, DicomIds | None] = {}  # one read per file, not per frame row
        for row in missing:
            rel = parse_row_path(str(row["path"]))[0]
            if rel not in ids_of:
                path = path_of.get(rel)
                ids_of[rel] = read_dicom_ids(path) if path is not None else None
            row.update(study_fields(secret, rel, ids_of[rel], row.get("laterality")))
