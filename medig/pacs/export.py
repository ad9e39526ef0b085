# SPDX-License-Identifier: Apache-2.0
"""``--dicom-out``: write the audit's DICOM objects under ``<out>/dicom/``.

Layout (mirroring ``overlays/`` and ``studies/``)::

    dicom/overlays/<image path>.dcm   Secondary Capture of each DICOM source image's overlay
    dicom/studies/<study>.dcm         Encapsulated PDF of studies/<study>.pdf
    dicom/sent.jsonl                  what was sent where (see medig.pacs.send)

Only images read from DICOM files that carry a Study and a SOP Instance UID get objects: a DICOM
object must be filed under the source's patient and study. Every file is written atomically; a
file already holding the same SOP Instance UID is kept as it is (one UID, one content: see
:mod:`medig.pacs.objects`), so re-runs change nothing on disk, and objects of a previous run
that the current audit no longer produces are removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from medig.audit.finalise import FinishedAudit
from medig.audit.manifest import read_manifest
from medig.audit.store import output_name, parse_row_path
from medig.io import sniff_file
from medig.pacs.capture import captioned
from medig.pacs.objects import Source, object_uid, overlay_capture, read_source, study_document
from medig.report.images import row_overlay
from medig.report.layout import fill, format_percent
from medig.report.per_study import STUDIES_FOLDER, study_page_id
from medig.report.template import Template, load_template
from medig.utils import atomic_path

__all__ = ["DICOM_FOLDER", "ExportResult", "dicom_objects", "export_dicom", "output_key"]

DICOM_FOLDER = "dicom"
_log = logging.getLogger("medig")


@dataclass
class ExportResult:
    """What :func:`export_dicom` did."""

    written: list[Path] = field(default_factory=list)  # new or changed objects
    kept: list[Path] = field(default_factory=list)  # already on disk with the same UID
    not_dicom: int = 0  # explained images read from non-DICOM files
    no_uid: int = 0  # DICOM images without a Study or SOP Instance UID
    removed: int = 0  # stale objects of an earlier run

    @property
    def objects(self) -> list[Path]:
        return self.written + self.kept


def output_key(audit: FinishedAudit) -> str:
    """Hash of what shapes the outputs: the numeric settings, the overlay scaling and scale."""
    manifest = read_manifest(audit.out_dir) or {}
    s = audit.settings
    blob = json.dumps([audit.plan.key(), s.overlay_scale, s.percentile,
                       manifest.get("cohort_clip")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def dicom_objects(out_dir: str | Path) -> list[Path]:
    """The DICOM objects under ``<out>/dicom/``, in a stable order."""
    folder = Path(out_dir) / DICOM_FOLDER
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file()) if folder.is_dir() else []


def _write(ds: pydicom.Dataset, path: Path, result: ExportResult) -> None:
    if object_uid(path) == str(ds.SOPInstanceUID):
        result.kept.append(path)
        return
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    result.written.append(path)


def _caption(template: Template, row: dict[str, Any]) -> list[str]:
    st = template["study"]
    predicted = row.get("predicted")
    prob = (row.get("probabilities") or {}).get(predicted)
    values = {"target": row.get("target"), "predicted": predicted,
              "probability": format_percent(prob, 1),
              "flag": st["dicom_flagged"] if row.get("flagged") is True else ""}
    return [" ".join(fill(line, values).split()) for line in st["dicom_caption"]]


def _derivation(audit: FinishedAudit, row: dict[str, Any]) -> str:
    s = audit.settings
    import medig

    return (f"Integrated Gradients attribution (medig {medig.__version__}) of the model's "
            f"{s.output} for class {row.get('target')}; model {s.model}; baselines "
            f"{', '.join(s.baselines)}; completeness tolerance {s.completeness_tol}")


def export_dicom(audit: FinishedAudit, template: Template | None = None) -> ExportResult:
    """Write the Secondary Captures and Encapsulated PDFs of ``audit`` under ``dicom/``.

    The study pages (``studies/<study>.pdf``) must have been written first: each Encapsulated
    PDF holds its page's bytes unchanged.
    """
    tpl = template or load_template(audit.settings.template)
    out = audit.out_dir
    folder = out / DICOM_FOLDER
    items = {it.rel: it for it in audit.items}
    key = output_key(audit)
    result = ExportResult()
    sources: dict[str, Source | None] = {}
    is_dicom: dict[str, bool] = {}
    study_sources: dict[str, list[Source]] = {}
    numbers: dict[tuple[str, str | None], int] = {}

    for row in audit.rows:
        if row.get("status") != "ok":
            continue
        rel, frame = parse_row_path(str(row["path"]))
        item = items.get(rel)
        if item is None:
            continue
        if rel not in sources:
            is_dicom[rel] = sniff_file(item.path) == "dicom"
            sources[rel] = read_source(item.path) if is_dicom[rel] else None
        source = sources[rel]
        if source is None:
            if is_dicom[rel]:
                result.no_uid += 1
            else:
                result.not_dicom += 1
            continue
        png = row_overlay(out, row)
        if png is None:
            continue
        with Image.open(png) as im:
            picture = captioned(np.asarray(im.convert("RGB")), _caption(tpl, row))
        lat = row.get("laterality") if row.get("laterality") in ("R", "L") else None
        n = numbers[(source.study_uid, lat)] = numbers.get((source.study_uid, lat), 0) + 1
        ds = overlay_capture(source, picture, frame=frame, laterality=lat, output_key=key,
                             instance_number=n, derivation=_derivation(audit, row))
        _write(ds, folder / "overlays" / f"{output_name(rel, frame)}.dcm", result)
        study_sources.setdefault(study_page_id(row), []).append(source)

    for study, group in study_sources.items():
        page = out / STUDIES_FOLDER / f"{study}.pdf"
        if not page.is_file():
            _log.warning("note: study page %s.pdf is missing: no Encapsulated PDF for it", study)
            continue
        ds = study_document(group, page.read_bytes(), output_key=key)
        _write(ds, folder / "studies" / f"{study}.dcm", result)

    keep = {p.resolve() for p in result.objects}
    for path in dicom_objects(out):
        if path.resolve() not in keep:
            path.unlink(missing_ok=True)
            result.removed += 1
    if result.not_dicom:
        _log.warning("note: %d image(s) not read from DICOM files get no DICOM output (a DICOM "
                     "object is filed under the source's patient and study)", result.not_dicom)
    if result.no_uid:
        _log.warning("note: %d DICOM image(s) without a Study or SOP Instance UID get no DICOM "
                     "output", result.no_uid)
    return result
