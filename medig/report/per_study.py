# SPDX-License-Identifier: Apache-2.0
"""Per-study pages: ``<out>/studies/<study>.pdf``, the audit as a clinician reads one patient.

One PDF per study (the ``study`` result field, see :mod:`medig.audit.study`), landscape, with the
right eye (OD) on the left of the page and the left eye (OS) on the right, as the clinician faces
the patient; images whose eye is not recorded follow under their own heading. Each image shows
the photograph as given to the model beside its overlay, the prediction in plain words, and what a
clinician needs to judge it (:data:`STUDY_FIGURES`: image quality, whether the attribution is
complete and trustworthy, lesion figures), then the colour legend and the disclaimer.

The pages carry no patient identifier whatever ``--include-phi`` says: the study is named by its
keyed code and images by their file names, so the same PDF can be shared for quality assurance
and is the exact document wrapped into the DICOM Encapsulated PDF (whose header carries the
patient's identity for the PACS). The PDFs are deterministic: reportlab's invariant mode (no
creation time or random document id) and the audit's date (:func:`audit_time`, its first run's
start) rather than the run's, so a re-run gives byte-identical files and the PACS nothing new.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from medig.report.data import AuditData, load_audit
from medig.report.fonts import get_fonts
from medig.report.images import overlay_path, overlay_pictures
from medig.report.layout import (
    FLAG_BG,
    RULE,
    ReportContext,
    fill,
    format_percent,
    format_time,
    numbered_canvas,
    table,
)
from medig.report.quality import quality_figures
from medig.report.rows import ResultRow
from medig.report.template import resolve_template
from medig.report.tolerance import accuracy_phrase, map_error_of
from medig.utils import atomic_write
from medig.visualize import legend_strip, png_bytes

__all__ = ["STUDIES_FOLDER", "TRUST_FIELDS", "audit_time", "build_study_pages", "group_studies",
           "study_page_id"]

#: Folder of the per-study PDFs inside the audit folder.
STUDIES_FOLDER = "studies"

#: Per-image trust and quality fields of the rows. Each is shown by its figure group in
#: :data:`STUDY_FIGURES`, and otherwise by name, so no figure is ever hidden.
TRUST_FIELDS = ("quality", "faithfulness", "baseline_agreement", "trust_flags")

#: Trust flags the figures already state (completeness, baseline agreement, faithfulness).
_FLAGS_IN_FIGURES = {"incomplete", "baseline-dependent", "not-faithful"}
#: Picture sizes tried, largest first, until a study's page fits one sheet.
_PICTURE_SCALES = (1.0, 0.85, 0.7, 0.6, 0.5)
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_RIGHT, _LEFT, _UNKNOWN = "R", "L", "?"


def study_page_id(row: ResultRow) -> str:
    """The page id of a row: its ``study`` field when well-formed, else a hash of its path.

    Rows are data: a ``study`` value that is not 16 hex digits is never used as a file name.
    """
    study = row.get("study")
    if isinstance(study, str) and _ID_RE.match(study):
        return study
    return hashlib.sha256(str(row.get("path")).encode("utf-8")).hexdigest()[:16]


def audit_time(manifest: dict[str, Any] | None) -> datetime.datetime | None:
    """When the audit was made: its first run's start (``first_started``; ``started`` in a
    manifest written before it was kept), UTC when the manifest names no zone; None when the
    manifest records no valid time. Re-runs and resumes keep it, so what is dated by it (the
    study pages, the DICOM objects) stays byte-identical."""
    if not isinstance(manifest, dict):
        return None
    for key in ("first_started", "started"):
        value = manifest.get(key)
        if not isinstance(value, str):
            continue
        try:
            when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
    return None


def group_studies(rows: Sequence[ResultRow]) -> dict[str, list[ResultRow]]:
    """Rows grouped by page id, in first-seen order (rows keep their order within a study)."""
    groups: dict[str, list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(study_page_id(row), []).append(row)
    return groups


def _eye(row: ResultRow) -> str:
    lat = str(row.get("laterality") or "").upper()
    return lat if lat in (_RIGHT, _LEFT) else _UNKNOWN


def _plain(value: Any) -> str:
    """A row value of any JSON type in plain words."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else "n/a"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "none"
    return str(value)


def _completeness_figure(ctx: ReportContext, row: ResultRow) -> list[tuple[str, str]]:
    """Completeness in one line: whether the overlay adds up, which is what a clinician acts on."""
    error = format_percent(row.get("relative_error"))
    accurate = accuracy_phrase(map_error_of(row))
    if row.get("flagged") is True:
        reason = row.get("flag_reason") or "completeness"
        return [("Attribution", f"NOT RELIABLE ({reason} not met; relative error {error}): "
                                "do not rely on it")]
    if row.get("flagged") is False:
        return [("Attribution", f"complete (relative error {error})"
                 + (f", {accurate}" if accurate else ""))]
    return []


def _trust_figures(ctx: ReportContext, row: ResultRow) -> list[tuple[str, str]]:
    """Baseline agreement and faithfulness as short verdicts (the cohort report has the detail)."""
    flags = set(row.get("trust_flags") or [])
    f = []
    agreement = row.get("baseline_agreement")
    if isinstance(agreement, (int, float)):
        verdict = ("depends on the reference image" if "baseline-dependent" in flags
                   else "consistent")
        f.append(("Baseline agreement", f"{agreement:.2f}: {verdict}"))
    faithful = row.get("faithfulness")
    if isinstance(faithful, (int, float)):
        verdict = "NOT faithful" if "not-faithful" in flags else "beats random removal"
        f.append(("Faithfulness", f"{faithful:+.2f}: {verdict}"))
    return f


def _lesion_figures(ctx: ReportContext, row: ResultRow) -> list[tuple[str, str]]:
    """Where the evidence lies against the lesion mask, in one line (when masks were given)."""
    mass, area = row.get("mask_mass_fraction"), row.get("mask_area_fraction")
    parts = []
    if isinstance(mass, (int, float)) and isinstance(area, (int, float)):
        parts.append(f"{format_percent(mass, 0)} of the positive evidence on the "
                     f"{format_percent(area, 0)} of the retina the lesions cover")
    if isinstance(row.get("pointing_hit"), bool):
        parts.append("strongest point on a lesion" if row["pointing_hit"]
                     else "strongest point off the lesions")
    return [("Evidence on lesions", "; ".join(parts))] if parts else []


#: What a clinician reads beside each eye: the quality verdict (not its measures), whether the
#: attribution is complete and trustworthy, and the lesion figures when masks were given. The
#: quadrature's numbers (F(x), F(x'), gap, steps) stay in the cohort report: they would push the
#: page past one sheet without telling the clinician anything to act on.
STUDY_FIGURES = (
    lambda ctx, row: quality_figures(ctx, row)[:1],
    _completeness_figure,
    _trust_figures,
    _lesion_figures,
)


def _figures(ctx: ReportContext, row: ResultRow) -> list[tuple[str, str]]:
    """:data:`STUDY_FIGURES`, then any trust field none of them shows (none is ever hidden)."""
    shown = [pair for group in STUDY_FIGURES for pair in group(ctx, row)]
    figures = list(shown)
    fields: Mapping[str, Any] = row  # read by name (tests/test_types.py checks the names)
    for name in TRUST_FIELDS:
        if fields.get(name) in (None, "", [], {}):
            continue
        if name == "trust_flags" and set(fields[name]) <= _FLAGS_IN_FIGURES:
            continue
        without = cast(ResultRow, {k: v for k, v in row.items() if k != name})
        if [pair for group in STUDY_FIGURES for pair in group(ctx, without)] == shown:
            figures.append((name.replace("_", " ").capitalize(), _plain(fields[name])))
    return figures


class _StudyPage:
    """The flowables of one study's PDF."""

    def __init__(self, ctx: ReportContext, study: str, rows: list[ResultRow]) -> None:
        self.ctx, self.study, self.rows = ctx, study, rows
        self.st = ctx.t["study"]
        self.col = (ctx.fw - 6 * mm) / 2
        # Pictures shrink with the images stacked in the fullest column (e.g. the frames of a
        # multi-frame file, or both eyes unrecorded), so a study of two per eye still fits a page.
        self.stacked = 1
        self.picture_scale = 1.0  # lowered by _write_pdf until the page fits one sheet

    def text(self, key: str, **values: Any) -> str:
        return fill(self.st[key], values)

    def header(self) -> list[Flowable]:
        ctx, rows = self.ctx, self.rows
        source = rows[0].get("study_source")
        if source == "image" or (source is None and len(rows) == 1):
            title = self.text("title_image", path=str(rows[0].get("path")))
        else:
            title = self.text("title", study=self.study)
        m = ctx.data.manifest
        model = (m.get("model") or {}).get("spec") or "n/a"
        when = audit_time(m)
        sub = self.text("subtitle", n_images=len(rows), model=model,
                        date=format_time(when.isoformat() if when else None))
        grouping = {"dicom": "grouping_dicom", "file name": "grouping_name"}.get(
            str(source), "grouping_image")
        title_style = ParagraphStyle("study_title", parent=ctx.s.title, fontSize=15, leading=18,
                                     spaceAfter=1)
        return [ctx.P(title, title_style),
                ctx.P(f"{sub}. {self.text(grouping)}", ctx.s.small), Spacer(1, 2)]

    def image_cell(self, row: ResultRow) -> list[Flowable]:
        """One image of an eye: the pictures, the prediction in words and the figures, stacked;
        or, when several images share the column, the figures beside smaller pictures."""
        ctx = self.ctx
        name = ctx.P(str(row.get("path")), ctx.s.h2)
        if row.get("laterality_source") == "file name":
            name = ctx.P(f"{row.get('path')}  ({self.text('eye_from_name')})", ctx.s.h2)
        if row.get("status") != "ok":
            return [name, ctx.P(self.text("unreadable", reason=row.get("error") or "unknown"),
                                ctx.s.body)]
        if self.stacked == 1:
            return [name, *self._pictures(row, self.col, 0.29 * ctx.fh * self.picture_scale),
                    *self._reading(row, self.col, columns=2)]
        pictures = max(0.25, 0.4 * self.picture_scale) * self.col
        reading = self.col - pictures
        side = Table([[self._pictures(row, pictures - 2 * mm,
                                      0.3 * ctx.fh * self.picture_scale / self.stacked),
                       self._reading(row, reading, columns=1)]],
                     colWidths=[pictures, reading], hAlign="LEFT")
        side.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                  ("LEFTPADDING", (0, 0), (-1, -1), 0),
                                  ("RIGHTPADDING", (0, 0), (-1, -1), 0)]))
        return [name, side]

    def _pictures(self, row: ResultRow, width: float, height: float) -> list[Flowable]:
        """The photograph beside its overlay (one PNG), at most ``width`` x ``height``."""
        ctx = self.ctx
        path = overlay_path(ctx, row)
        if path is None:
            return [ctx.P(self.text("no_overlay"), ctx.s.small)]
        try:
            return overlay_pictures(ctx, path, width, height, self.text("photo_caption"),
                                    self.text("overlay_caption"))
        except (OSError, ValueError):
            return [ctx.P(self.text("no_overlay"), ctx.s.small)]

    def _reading(self, row: ResultRow, width: float, columns: int) -> list[Flowable]:
        """The prediction in words, what the colours refer to, and the figures in a table of
        ``columns`` label/value pairs per line."""
        ctx = self.ctx
        flagged = row.get("flagged") is True
        predicted = row.get("predicted")
        prob = (None if predicted is None
                else (row.get("probabilities") or {}).get(predicted))
        parts: list[Flowable] = [
            Spacer(1, 3),
            ctx.P(self.text("prediction", predicted=predicted, probability=format_percent(prob, 1)),
                  ctx.s.key if columns > 1 else ctx.s.cell, bold=True),
            ctx.P(self.text("evidence", target=row.get("target")), ctx.s.small)]
        if flagged:
            parts.append(ctx.P(self.text("flagged"), ctx.s.cell_bold))
        figures = _figures(ctx, row)
        if not figures:
            return parts
        per_column = -(-len(figures) // columns)
        rows = []
        for i in range(per_column):
            line: list[Any] = []
            for c in range(columns):
                k = c * per_column + i
                line += ([ctx.P(figures[k][0], ctx.s.cell_bold), ctx.P(figures[k][1], ctx.s.cell)]
                         if k < len(figures) else ["", ""])
            rows.append(line)
        label, value = 0.46 / columns * width, 0.54 / columns * width
        extra = [("BACKGROUND", (0, 0), (-1, -1), FLAG_BG)] if flagged else []
        return [*parts, Spacer(1, 2),
                table(rows, [label, value] * columns, header=False, extra=extra)]

    def eye_table(self, right: list[ResultRow], left: list[ResultRow],
                  heads: tuple[str, str] | None) -> Table:
        ctx = self.ctx
        data: list[list[Any]] = []
        if heads is not None:
            head = ParagraphStyle("eye", parent=ctx.s.h1, spaceBefore=2, spaceAfter=2)
            data.append([ctx.P(h, head) for h in heads])
        n = max(len(right), len(left), 1 if heads is not None else 0)
        for k in range(n):
            cells: list[Any] = []  # a cell's flowables, or "" when empty
            for eye in (right, left):
                if k < len(eye):
                    cells.append(self.image_cell(eye[k]))
                elif k == 0 and heads is not None:
                    cells.append([ctx.P(self.text("no_image"), ctx.s.body)])
                else:
                    cells.append("")
            data.append(cells)
        # splitInRow: an eye's block taller than a page (long hospital wording) continues on the
        # next page instead of failing the layout
        t = Table(data, colWidths=[self.col + 3 * mm] * 2, hAlign="LEFT",
                  repeatRows=1 if heads is not None else 0, splitInRow=1)
        t.setStyle(TableStyle([
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3 * mm),
            ("LINEAFTER", (0, 0), (0, -1), 0.5, RULE),
            ("LEFTPADDING", (1, 0), (1, -1), 3 * mm),
        ]))
        return t

    def footer(self) -> list[Flowable]:
        """The colour legend beside the disclaimer, at the foot of the study."""
        ctx, tx = self.ctx, self.ctx.t["text"]
        w = 0.42 * ctx.fw
        bar = Image(io.BytesIO(png_bytes(legend_strip(width=300, height=12))), width=0.6 * w,
                    height=0.6 * w * 12 / 300)
        bar.hAlign = "LEFT"
        cohort = isinstance(ctx.data.manifest.get("cohort_clip"), (int, float))
        words = " ".join([tx["legend_positive"], tx["legend_negative"], tx["legend_neutral"],
                          tx["scale_cohort" if cohort else "scale_per_image"]])
        legend = [bar, Spacer(1, 2), ctx.P(words, ctx.s.small)]
        disclaimer = " ".join(ctx.t["report"]["disclaimer"].split())
        cells = [[legend, ctx.P(disclaimer, ctx.s.small) if disclaimer else ""]]
        box = Table(cells, colWidths=[w, ctx.fw - w], hAlign="LEFT")
        style: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (0, 0), 0),
                 ("RIGHTPADDING", (0, 0), (0, 0), 4 * mm)]
        if disclaimer:
            style += [("BOX", (1, 0), (1, 0), 0.5, RULE), ("LEFTPADDING", (1, 0), (1, 0), 5)]
        box.setStyle(TableStyle(style))
        return [Spacer(1, 6), KeepTogether([box])]

    def story(self) -> list[Flowable]:
        ctx = self.ctx
        shown = [r for r in self.rows if r.get("status") == "ok"]
        right = [r for r in shown if _eye(r) == _RIGHT]
        left = [r for r in shown if _eye(r) == _LEFT]
        unknown = [r for r in shown if _eye(r) == _UNKNOWN]
        story = self.header()
        self.stacked = max(len(right), len(left), (len(unknown) + 1) // 2, 1)
        if right or left:
            story.append(self.eye_table(right, left, (self.text("right_eye"),
                                                      self.text("left_eye"))))
        if unknown:
            if right or left:
                story.append(ctx.P(self.text("unknown_eye"), ctx.s.h1))
            else:
                story.append(ctx.P(self.text("unknown_eye_only"), ctx.s.small))
            story.append(self.eye_table(unknown[0::2], unknown[1::2], None))
        for row in self.rows:  # images not explained (unreadable or skipped): one line each
            if row.get("status") != "ok":
                eye = {_RIGHT: self.text("right_eye"), _LEFT: self.text("left_eye")}.get(_eye(row))
                name = f"{eye}, {row.get('path')}" if eye else str(row.get("path"))
                if row.get("status") == "skipped":
                    reasons = "; ".join(row.get("quality_reasons") or []) or str(row.get("quality"))
                    reason = self.text("skipped", reasons=reasons)
                else:
                    reason = self.text("unreadable", reason=row.get("error") or "unknown")
                story.append(ctx.P(f"{name}: {reason}", ctx.s.cell_bold))
        return story + self.footer()


def _write_pdf(path: Path, ctx: ReportContext, page: _StudyPage, pagesize: Any,
               margin: float) -> None:
    rep = ctx.t["report"]
    canvas_cls = numbered_canvas(rep["title"], rep["institution"], rep["footer_disclaimer"],
                                 ctx.fonts, margin)

    def build(target: Any) -> int:
        doc = SimpleDocTemplate(
            target, pagesize=pagesize, leftMargin=margin, rightMargin=margin,
            topMargin=margin, bottomMargin=margin, title=page.text("pdf_title", study=page.study),
            author=rep["institution"] or "medig", subject="Integrated Gradients audit",
            creator="medig", invariant=True)
        doc.build(page.story(), canvasmaker=canvas_cls)
        return doc.page

    # One sheet per study: the pictures shrink until everything fits (a study with many images
    # per eye may still need a second sheet rather than unreadably small pictures).
    for scale in _PICTURE_SCALES:
        page.picture_scale = scale
        pdf = io.BytesIO()
        if build(pdf) == 1:
            break
    atomic_write(path, pdf.getvalue())


def build_study_pages(
    out_dir: str | os.PathLike,
    template: str | os.PathLike | dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/studies/<study>.pdf`` for every study of an audit; returns them by id.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Audit output directory (``results.jsonl``, ``manifest.json``, overlays).
    template : str, os.PathLike, dict or None
        Report template, as for :func:`medig.report.build_report`; its ``[study]`` table holds
        the pages' wording.

    Returns
    -------
    dict
        Page path by study id. PDFs of studies no longer in the results are removed.

    Raises
    ------
    FileNotFoundError
        ``results.jsonl`` is missing.
    medig.report.TemplateError
        The template is invalid.
    """
    out = Path(out_dir)
    tpl = resolve_template(template)
    data = load_audit(out)
    fonts = get_fonts()
    pagesize = landscape(A4 if str(tpl["report"]["page_size"]).upper() == "A4" else letter)
    margin = 14 * mm
    fw, fh = pagesize[0] - 2 * margin, pagesize[1] - 2 * margin
    folder = out / STUDIES_FOLDER
    written: dict[str, Path] = {}
    for study, rows in group_studies(data.rows).items():
        study_data = AuditData(rows=rows, manifest=data.manifest)
        ctx = ReportContext(out, study_data, tpl, False, fonts, fw, fh)
        path = folder / f"{study}.pdf"
        _write_pdf(path, ctx, _StudyPage(ctx, study, rows), pagesize, margin)
        written[study] = path
    if folder.is_dir():  # pages of studies that are gone (e.g. after --force) are stale
        for stale in folder.glob("*.pdf"):
            if stale.stem not in written:
                stale.unlink(missing_ok=True)
    return written
