# SPDX-License-Identifier: Apache-2.0
"""``--dicom-out``: write the audit's DICOM objects under ``<out>/dicom/``.

Layout (mirroring ``overlays/`` and ``studies/``)::

    dicom/overlays/<image path>.dcm   Secondary Capture of each DICOM source image's overlay
    dicom/sr/<image path>.dcm         its Measurement Report (Enhanced SR, medig.pacs.sr)
    dicom/maps/<image path>.dcm       its evidence map (Segmentation, medig.pacs.maps)
    dicom/studies/<study>.dcm         Encapsulated PDF of studies/<study>.pdf
    dicom/sent.jsonl                  what was sent where (see medig.pacs.send)

Only images read from DICOM files that carry a Study and a SOP Instance UID get objects: a DICOM
object must be filed under the source's patient and study. Every file is written atomically; a
file already holding the same SOP Instance UID is kept as it is (one UID, one content: see
:mod:`medig.pacs.objects`), so re-runs change nothing on disk, and objects of a previous run
that the current audit no longer produces are removed.

A source whose objects cannot be made (its patient text cannot be copied with certainty, a
header highdicom refuses, an unreadable overlay) costs only its own objects: one line names the
file and the reason, the other sources get theirs, and its objects of an earlier run stay. A
file that cannot be written (a full disk) stops the export with one line,
:class:`~medig.pacs.errors.DicomIncomplete`: the other objects would fail the same way.
"""
from __future__ import annotations

import hashlib
import io
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
from medig.pacs.charset import UncopyableText
from medig.pacs.errors import DicomIncomplete
from medig.pacs.maps import (
    EVIDENCE_FRACTION,
    evidence_masks,
    evidence_segmentation,
    evidence_threshold,
    on_source_grid,
)
from medig.pacs.objects import Source, object_uid, overlay_capture, read_source, study_document
from medig.pacs.sr import Algorithm, measurement_report
from medig.report.images import row_overlay
from medig.report.layout import fill, format_percent
from medig.report.per_study import STUDIES_FOLDER, audit_time, study_page_id
from medig.report.rows import ResultRow
from medig.report.template import Template, load_template
from medig.utils import atomic_write

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
    failed: list[str] = field(default_factory=list)  # one line per source or study without objects

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


def _encoded(ds: pydicom.Dataset) -> bytes:
    """``ds`` as a DICOM file, in memory: medig writes the bytes, so an error while writing the
    file is the plain OSError (pydicom wraps one in its own traceback text)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _write(path: Path, sop_uid: str, data: bytes, out: Path, result: ExportResult) -> None:
    """Write ``data`` to ``path`` unless it already holds the SOP instance ``sop_uid``."""
    if object_uid(path) == sop_uid:
        result.kept.append(path)
        return
    try:
        atomic_write(path, data)
    except OSError as error:
        reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
        raise DicomIncomplete(f"cannot write {path.relative_to(out).as_posix()}: {reason}; the "
                              "results and report are written, re-run to write the DICOM "
                              "objects") from None
    result.written.append(path)


def _reason(error: Exception) -> str:
    """Why a source got no objects, in words that quote no value of its header (highdicom's and
    pydicom's messages quote patient names and dates)."""
    if isinstance(error, UncopyableText):
        return str(error)
    return f"its header was refused ({type(error).__name__})"


def _failed(result: ExportResult, line: str) -> None:
    _log.warning("%s", line)
    result.failed.append(line)


def _caption(template: Template, row: ResultRow) -> list[str]:
    st = template["study"]
    predicted = row.get("predicted")
    prob = None if predicted is None else (row.get("probabilities") or {}).get(predicted)
    values = {"target": row.get("target"), "predicted": predicted,
              "probability": format_percent(prob, 1),
              "flag": st["dicom_flagged"] if row.get("flagged") is True else ""}
    return [" ".join(fill(line, values).split()) for line in st["dicom_caption"]]


def _derivation(audit: FinishedAudit, row: ResultRow) -> str:
    s = audit.settings
    import medig

    return (f"Integrated Gradients attribution (medig {medig.__version__}) of the model's "
            f"{s.output} for class {row.get('target')}; model {s.model}; baselines "
            f"{', '.join(s.baselines)}; completeness tolerance {s.completeness_tol}")


#: What the evidence map needs of the stored work, per frame.
_MAP_ARRAYS = ("attr_map", "attr_scale", "fov", "box", "source_shape")
_MAP_DESCRIPTION = f"medig IG evidence: top {EVIDENCE_FRACTION:.0%} of |attribution|"


def _algorithm(audit: FinishedAudit, manifest: dict[str, Any]) -> Algorithm:
    s = audit.settings
    sha = (manifest.get("model") or {}).get("weights_sha256")
    return Algorithm(str(s.model), sha, [f"output {s.output}",
                                        f"baselines {', '.join(s.baselines)}",
                                        f"completeness tolerance {s.completeness_tol}"])


def _sanity(manifest: dict[str, Any]) -> str | None:
    return ((manifest.get("trust_checks") or {}).get("sanity_check") or {}).get("status")


def _evidence(audit: FinishedAudit, rel: str, frame: int | None
              ) -> tuple[np.ndarray, dict[str, float]] | None:
    """The evidence masks of one frame on its source grid, and the map's figures; None when its
    stored work lacks what they need (damaged, or written by an older medig)."""
    try:
        arrays = audit.store.load_arrays(audit.key_of[rel], frame or 0, *_MAP_ARRAYS)
        if arrays is None:  # damaged (said by the store)
            return None
        scale = float(arrays["attr_scale"])
        amap = arrays["attr_map"].astype(np.float32).reshape(arrays["attr_map"].shape[-2:]) * scale
        threshold = evidence_threshold(amap, arrays["fov"].reshape(amap.shape))
        values = on_source_grid(amap, arrays["box"],
                                tuple(int(v) for v in arrays["source_shape"]))
    except Exception:  # noqa: BLE001 - any damage to stored work: no map (said once)
        return None
    return evidence_masks(values, threshold), {"map_scale": scale, "map_threshold": threshold}


def export_dicom(audit: FinishedAudit, template: Template | None = None) -> ExportResult:
    """Write the Secondary Captures, Measurement Reports, evidence Segmentations and
    Encapsulated PDFs of ``audit`` under ``dicom/``.

    The study pages (``studies/<study>.pdf``) must have been written first: each Encapsulated
    PDF holds its page's bytes unchanged. The objects are dated by the audit
    (:func:`medig.report.per_study.audit_time`), not by this run.

    Sources whose objects cannot be made are listed in :attr:`ExportResult.failed` (and logged,
    one line each); the caller decides the exit code.

    Raises
    ------
    medig.pacs.errors.DicomIncomplete
        An object could not be written (a full disk, a read-only folder): one line naming it.
    """
    tpl = template or load_template(audit.settings.template)
    out = audit.out_dir
    folder = out / DICOM_FOLDER
    items = {it.rel: it for it in audit.items}
    key = output_key(audit)
    manifest = read_manifest(out) or {}
    created = audit_time(manifest)
    algorithm, sanity = _algorithm(audit, manifest), _sanity(manifest)
    result = ExportResult()
    sources: dict[str, Source | None] = {}
    is_dicom: dict[str, bool] = {}
    refused: set[str] = set()  # sources that got no objects (said once per file)
    keep: set[Path] = set()  # objects of an earlier run for sources that failed this time
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
        lat = row.get("laterality") if row.get("laterality") in ("R", "L") else None
        # numbered before it is built: a source that fails does not renumber (and so re-UID)
        # the others of its series
        n = numbers[(source.study_uid, lat)] = numbers.get((source.study_uid, lat), 0) + 1
        name = f"{output_name(rel, frame)}.dcm"
        target = folder / "overlays" / name
        report_path, map_path = folder / "sr" / name, folder / "maps" / name
        if rel in refused:
            keep.update((target, report_path, map_path))
            continue
        try:
            with Image.open(png) as im:
                picture = captioned(np.asarray(im.convert("RGB")), _caption(tpl, row))
        except (OSError, ValueError) as error:
            keep.add(target)
            _failed(result, f"no DICOM overlay for {row['path']}: its overlay {png.name} could "
                            f"not be read ({type(error).__name__})")
            continue
        try:
            ds = overlay_capture(source, picture, frame=frame, laterality=lat, output_key=key,
                                 instance_number=n, derivation=_derivation(audit, row),
                                 created=created)
            data = _encoded(ds)
            evidence = _evidence(audit, rel, frame)
            made = [(target, ds, data)]
            if evidence is not None:
                seg = evidence_segmentation(source, evidence[0], frame=frame, output_key=key,
                                            instance_number=n, description=_MAP_DESCRIPTION,
                                            created=created)
                made.append((map_path, seg, _encoded(seg)))
            report = measurement_report(source, row, frame=frame, algorithm=algorithm,
                                        sanity=sanity, output_key=key, instance_number=n,
                                        map_figures=evidence[1] if evidence else None,
                                        created=created)
            made.append((report_path, report, _encoded(report)))
        except Exception as error:  # noqa: BLE001 - one source never stops the others
            refused.add(rel)
            keep.update((target, report_path, map_path,
                         folder / "studies" / f"{study_page_id(row)}.dcm"))
            _failed(result, f"no DICOM objects for {row['path']}: {_reason(error)}")
            continue
        if evidence is None:
            keep.add(map_path)
            _failed(result, f"no DICOM evidence map for {row['path']}: its stored work lacks "
                            "the attribution map or its crop box; re-audit with --force")
        for path, made_ds, made_data in made:
            _write(path, str(made_ds.SOPInstanceUID), made_data, out, result)
        study_sources.setdefault(study_page_id(row), []).append(source)

    for study, group in study_sources.items():
        page = out / STUDIES_FOLDER / f"{study}.pdf"
        if not page.is_file():
            _log.warning("note: study page %s.pdf is missing: no Encapsulated PDF for it", study)
            continue
        target = folder / "studies" / f"{study}.dcm"
        try:
            pdf = page.read_bytes()
        except OSError as error:
            keep.add(target)
            _failed(result, f"no Encapsulated PDF of study page {study}.pdf: it could not be "
                            f"read ({error.strerror or type(error).__name__})")
            continue
        try:
            ds = study_document(group, pdf, output_key=key, created=created)
            data = _encoded(ds)
        except Exception as error:  # noqa: BLE001 - one study never stops the others
            keep.add(target)
            _failed(result, f"no Encapsulated PDF of study page {study}.pdf: {_reason(error)}")
            continue
        _write(target, str(ds.SOPInstanceUID), data, out, result)

    keep = {p.resolve() for p in [*result.objects, *keep]}
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
