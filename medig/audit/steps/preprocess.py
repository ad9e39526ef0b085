# SPDX-License-Identifier: Apache-2.0
"""Batch step: crop each decoded photograph on its field of view and resize it for the model."""
from __future__ import annotations

from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.io.dicom_ids import _laterality as dicom_laterality
from medig.preprocess import FundusPreprocess

__all__ = ["Laterality", "Preprocess"]


class Preprocess:
    """``images``, ``fov`` and ``boxes`` from ``pixels`` (batched, on the audit's device); with
    the quality gate on, also ``quality`` (verdicts from the same field of view)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.preprocess = FundusPreprocess(size=ctx.plan.size, graham=ctx.settings.graham)
        self.quality = ctx.settings.quality != "off"

    def __call__(self, batch: ImageBatch) -> None:
        if self.quality:
            batch.images, batch.fov, batch.boxes, quality = self.preprocess.forward_with_boxes(
                batch.pixels, return_quality=True)
            batch.quality = quality.rows()
            return
        batch.images, batch.fov, batch.boxes = self.preprocess.forward_with_boxes(batch.pixels)


class Laterality:
    """The ``laterality`` field from the DICOM attributes, when the file has them: ``ImageLaterality``
    or else ``Laterality``, read as the header is (:mod:`medig.io.dicom_ids`). A value that is not
    one of DICOM's R, L, B, U (any case, padded) says nothing, so the file name's hint may apply."""

    def __call__(self, batch: ImageBatch) -> None:
        for fields, metadata in zip(batch.fields, batch.metadata):
            fields["laterality"] = dicom_laterality(metadata)
