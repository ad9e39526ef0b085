# SPDX-License-Identifier: Apache-2.0
"""Build the PDF report of an audit directory with reportlab platypus."""

from __future__ import annotations

import io
import json
import math
import os
import random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from medig.render import legend_strip, png_bytes
from medig.report.charts import completeness_chart
from medig.report.data import AuditData, load_audit, relative_error_bins, tolerance_of
from medig.report.fonts import FontSet, get_fonts, markup
from medig.report.template import Template, load_template, merge_template
from medig.utils import atomic_path

__all__ = ["build_report", "format_number", "format_percent"]

_GREY = colors.HexColor("#555555")
_RULE = colors.HexColor("#bbbbbb")
_FLAG_BG = colors.HexColor("#fdecd8")
_LATERALITY = {"R": "right eye", "L": "left eye", "B": "both eyes", "U": "unknown"}
_SAMPLE_SEED = 0


# --------------------------------------------------------------------------------------------- formats
def format_percent(x: float | None, digits: int = 2) -> str:
    """Fraction as a percentage, e.g. ``0.00423 -> "0.42%"``; ``None``/non-finite -> ``"n/a"``.

    This is how relative completeness errors and fractions are printed in the report.
    """
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:.{digits}f}%"


def format_number(x: float | None) -> str:
    """Model outputs and deltas: 4 significant digits, scientific notation for tiny values."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4g}"


def _format_time(value: Any) -> str:
    if not value:
        return "n/a"
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    zone = t.strftime(" %Z") if t.tzinfo else ""
    return t.strftime("%Y-%m-%d %H:%M") + (zone if zone.strip() else "")


def _fill(text: str, values: dict[str, Any]) -> str:
    class _Keep(dict):  # unknown {names} in a hospital's wording are printed as written
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        return text.format_map(_Keep(values))
    except (ValueError, IndexError):  # stray braces in the template text
        return text


# --------------------------------------------------------------------------------------------- styles
class _Styles:
    def __init__(self, fonts: FontSet) -> None:
        base = ParagraphStyle(
            "body",
            fontName=fonts.regular,
            fontSize=9.5,
            leading=12.5,
            alignment=TA_LEFT,
            splitLongWords=True,
            spaceAfter=4,
        )
        self.body = base
        self.small = ParagraphStyle("small", parent=base, fontSize=8, leading=10, spaceAfter=0)
        self.cell = ParagraphStyle("cell", parent=base, fontSize=8.5, leading=10.5, spaceAfter=0)
        self.cell_bold = ParagraphStyle("cellb", parent=self.cell, fontName=fonts.bold)
        self.title = ParagraphStyle(
            "title", parent=base, fontName=fonts.bold, fontSize=18, leading=22, spaceAfter=4
        )
        self.subtitle = ParagraphStyle(
            "subtitle", parent=base, fontSize=10.5, leading=13, textColor=_GREY, spaceAfter=10
        )
        self.h1 = ParagraphStyle(
            "h1",
            parent=base,
            fontName=fonts.bold,
            fontSize=13,
            leading=16,
            spaceBefore=10,
            spaceAfter=6,
        )
        self.h2 = ParagraphStyle(
            "h2",
            parent=base,
            fontName=fonts.bold,
            fontSize=10,
            leading=12.5,
            spaceBefore=2,
            spaceAfter=3,
        )
        self.key = ParagraphStyle("key", parent=base, fontSize=10.5, leading=14, spaceAfter=2)
        self.disclaimer = ParagraphStyle(
            "disc",
            parent=base,
            fontSize=8.5,
            leading=11,
            textColor=_GREY,
            borderColor=_RULE,
            borderWidth=0.5,
            borderPadding=5,
            spaceBefore=8,
        )


def _p(text: Any, style: ParagraphStyle, fonts: FontSet, bold: bool = False) -> Paragraph:
    body = markup(text, fonts)
    return Paragraph(f"<b>{body}</b>" if bold else body, style)


def _paragraphs(text: str, style: ParagraphStyle, fonts: FontSet) -> list[Flowable]:
    return [
        _p(" ".join(block.split()), style, fonts) for block in text.split("\n\n") if block.strip()
    ]


def _table(
    data: list[list[Any]],
    widths: list[float],
    header: bool = True,
    extra: list[tuple] | None = None,
) -> Table:
    t = Table(data, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, _RULE),
    ]
    if header:
        style += [("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black)]
    t.setStyle(TableStyle(style + (extra or [])))
    return t


# --------------------------------------------------------------------------------------------- canvas
def _numbered_canvas(
    header_left: str, header_right: str, footer: str, fonts: FontSet, margin: float
) -> type[rl_canvas.Canvas]:
    """A canvas that knows the page count at save time, for "Page X of Y" (two-pass free)."""

    hstyle = ParagraphStyle("hdr", fontName=fonts.regular, fontSize=7.5, leading=9, textColor=_GREY)
    rstyle = ParagraphStyle("hdrr", parent=hstyle, alignment=2)

    class NumberedCanvas(rl_canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._saved: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._saved.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._saved)
            for state in self._saved:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _draw(self, text: str, style: ParagraphStyle, x: float, y: float, w: float) -> None:
            para = Paragraph(markup(text, fonts), style)
            _, h = para.wrap(w, 40)
            para.drawOn(self, x, y - h)

        def _decorate(self, total: int) -> None:
            width, height = self._pagesize
            inner = width - 2 * margin
            self.saveState()
            self.setStrokeColor(_RULE)
            self.setLineWidth(0.5)
            top = height - margin + 16
            self._draw(header_left, hstyle, margin, top + 10, inner * 0.62)
            if header_right:
                self._draw(header_right, rstyle, margin + inner * 0.64, top + 10, inner * 0.36)
            self.line(margin, top - 2, width - margin, top - 2)
            bottom = margin - 14
            self.line(margin, bottom + 4, width - margin, bottom + 4)
            self._draw(footer, hstyle, margin, bottom, inner * 0.75)
            self._draw(
                f"Page {self._pageNumber} of {total}",
                rstyle,
                margin + inner * 0.75,
                bottom,
                inner * 0.25,
            )
            self.restoreState()

    return NumberedCanvas


# --------------------------------------------------------------------------------------------- sections
class _Report:
    def __init__(
        self,
        out_dir: Path,
        data: AuditData,
        template: Template,
        include_phi: bool,
        fonts: FontSet,
        frame_width: float,
        frame_height: float,
    ) -> None:
        self.out_dir = out_dir
        self.data = data
        self.t = template
        self.include_phi = include_phi
        self.fonts = fonts
        self.s = _Styles(fonts)
        self.fw = frame_width
        self.fh = frame_height
        self.tol = tolerance_of(data.manifest)

    # helpers
    def P(self, text: Any, style: ParagraphStyle | None = None, bold: bool = False) -> Paragraph:
        return _p(text, style or self.s.body, self.fonts, bold)

    def heading(self, key: str) -> Paragraph:
        return self.P(self.t["headings"][key], self.s.h1)

    def text(self, key: str, **values: Any) -> list[Flowable]:
        return _paragraphs(_fill(self.t["text"][key], values), self.s.body, self.fonts)

    def tol_text(self) -> str:
        return format_percent(self.tol) if self.tol is not None else "the audit's tolerance"

    # sections -----------------------------------------------------------------------------------
    def cover(self) -> list[Flowable]:
        r = self.t["report"]
        out: list[Flowable] = [self.P(r["title"], self.s.title)]
        if r["subtitle"]:
            out.append(self.P(r["subtitle"], self.s.subtitle))
        lines = [x for x in (r["institution"], r["prepared_for"]) if x]
        out += [self.P(x, self.s.body) for x in lines]
        out.append(Spacer(1, 4))
        return out

    def summary(self) -> list[Flowable]:
        d, m = self.data, self.data.manifest
        n, n_ok, n_err, n_flag = len(d.rows), len(d.ok), len(d.errors), len(d.flagged)
        model = m.get("model") or {}
        out: list[Flowable] = [self.heading("summary")]
        # The one-minute read: three sentences in plain words, before any table.
        key = [
            f"{n} image{'s' if n != 1 else ''} audited: {n_ok} explained, {n_err} could not be read.",
            (
                f"{n_flag} of {n_ok} explained image{'s' if n_ok != 1 else ''} "
                f"({format_percent(n_flag / n_ok, 1) if n_ok else 'n/a'}) flagged: their attribution is "
                f"incomplete (relative error above {self.tol_text()}) and their overlay should not be relied on."
            ),
        ]
        preds = d.prediction_counts()
        if n_ok and preds:
            key.append(
                "Model predictions: " + ", ".join(f"{k}: {v}" for k, v in preds.items()) + "."
            )
        for line in key:
            out.append(Paragraph("\u2022 " + markup(line, self.fonts), self.s.key))
        out.append(Spacer(1, 6))

        settings = m.get("settings") or {}
        rows: list[list[Any]] = []

        def add(label: str, value: Any) -> None:
            if value not in (None, "", [], {}):
                rows.append([self.P(label, self.s.cell_bold), self.P(value, self.s.cell)])

        add(
            "Audit run",
            f"{_format_time(m.get('started'))} to {_format_time(m.get('finished'))}"
            if m.get("started") or m.get("finished")
            else None,
        )
        add("Images", f"{n} total; {n_ok} explained; {n_err} failed to read; {n_flag} flagged")
        add("Model", model.get("spec"))
        add("Classes", ", ".join(str(c) for c in d.class_names))
        add("Input size", f"{model['input_size']} px" if model.get("input_size") else None)
        targets = d.target_counts()
        add(
            "Class explained",
            ", ".join(f"{k} ({v} images)" for k, v in targets.items()) if targets else None,
        )
        output = m.get("output") or settings.get("output")
        add("Model output explained", output)
        baselines = settings.get("baselines", settings.get("baseline"))
        if isinstance(baselines, (list, tuple)):
            baselines = ", ".join(map(str, baselines))
        add("Reference image (baseline)", baselines)
        add("Completeness tolerance", format_percent(self.tol) if self.tol is not None else None)
        if isinstance(m.get("cohort_clip"), (int, float)):
            add(
                "Colour scale",
                f"same for all images (saturates at |attribution| = {format_number(m['cohort_clip'])})",
            )
        if rows:
            out.append(_table(rows, [0.3 * self.fw, 0.7 * self.fw], header=False))
        if n_ok and preds:
            out.append(Spacer(1, 8))
            out.append(self.P("Predictions per class", self.s.h2))
            prow: list[list[Any]] = [
                [self.P(h, self.s.cell_bold) for h in ("Class", "Images", "Share of explained")]
            ]
            for name, count in preds.items():
                prow.append(
                    [
                        self.P(name, self.s.cell),
                        self.P(str(count), self.s.cell),
                        self.P(format_percent(count / n_ok, 1), self.s.cell),
                    ]
                )
            out.append(_table(prow, [0.4 * self.fw, 0.2 * self.fw, 0.25 * self.fw]))
        for note in d.notes:
            out.append(self.P("Note: " + note, self.s.small))
        disc = self.t["report"]["disclaimer"]
        if disc:
            out.append(self.P(" ".join(disc.split()), self.s.disclaimer))
        return out

    def completeness(self) -> list[Flowable]:
        errs = [
            float(r["relative_error"])
            for r in self.data.ok
            if isinstance(r.get("relative_error"), (int, float))
        ]
        out: list[Flowable] = [CondPageBreak(230), self.heading("completeness")]
        out += self.text("completeness_intro", tolerance=self.tol_text())
        if not errs:
            out.append(self.P("No completeness figures are available.", self.s.body))
            return out
        bins = relative_error_bins(errs, self.tol)
        out.append(
            completeness_chart(bins, self.tol, self.fonts, width=min(self.fw, 440), height=150)
        )
        errs_sorted = sorted(errs)
        median = (
            errs_sorted[len(errs_sorted) // 2]
            if len(errs_sorted) % 2
            else 0.5 * (errs_sorted[len(errs_sorted) // 2 - 1] + errs_sorted[len(errs_sorted) // 2])
        )
        steps = [
            int(r["n_steps"]) for r in self.data.ok if isinstance(r.get("n_steps"), (int, float))
        ]
        line = (
            f"Median relative error {format_percent(median)}, largest {format_percent(max(errs))}"
        )
        if steps:
            line += f"; integration steps per image: {min(steps)} to {max(steps)}"
        out.append(self.P(line + ".", self.s.small))
        return out

    def flagged(self) -> list[Flowable]:
        out: list[Flowable] = [CondPageBreak(80), self.heading("flagged")]
        flagged = sorted(self.data.flagged, key=lambda r: -(r.get("relative_error") or 0.0))
        if not flagged:
            return out + self.text("no_flagged")
        data: list[list[Any]] = [
            [
                self.P(h, self.s.cell_bold)
                for h in ("Image", "Relative error", "Steps", "Prediction")
            ]
        ]
        for r in flagged:
            data.append(
                [
                    self.P(r["path"], self.s.cell),
                    self.P(format_percent(r.get("relative_error")), self.s.cell),
                    self.P(r.get("n_steps", "n/a"), self.s.cell),
                    self.P(self._prediction(r), self.s.cell),
                ]
            )
        out.append(_table(data, [0.48 * self.fw, 0.15 * self.fw, 0.09 * self.fw, 0.28 * self.fw]))
        return out

    def errors(self) -> list[Flowable]:
        out: list[Flowable] = [CondPageBreak(80), self.heading("errors")]
        errs = self.data.errors
        if not errs:
            return out + self.text("no_errors")
        data: list[list[Any]] = [[self.P(h, self.s.cell_bold) for h in ("Image", "Reason")]]
        for r in errs:
            data.append(
                [
                    self.P(r["path"], self.s.cell),
                    self.P(r.get("error") or "unknown error", self.s.cell),
                ]
            )
        out.append(_table(data, [0.45 * self.fw, 0.55 * self.fw]))
        return out

    def localisation(self) -> list[Flowable]:
        if not self.data.has_localisation:
            return []
        ok = self.data.ok
        out: list[Flowable] = [CondPageBreak(120), self.heading("localisation")]
        out += self.text("localisation_intro")
        hits = [r["pointing_hit"] for r in ok if isinstance(r.get("pointing_hit"), bool)]
        pairs = [
            (r["mask_mass_fraction"], r["mask_area_fraction"])
            for r in ok
            if isinstance(r.get("mask_mass_fraction"), (int, float))
            and isinstance(r.get("mask_area_fraction"), (int, float))
        ]
        rows: list[list[Any]] = []
        if hits:
            rows.append(
                [
                    self.P("Pointing game", self.s.cell_bold),
                    self.P(
                        f"{sum(hits)} of {len(hits)} images hit a lesion ({format_percent(sum(hits) / len(hits), 1)})",
                        self.s.cell,
                    ),
                ]
            )
        if pairs:
            mass = sum(p[0] for p in pairs) / len(pairs)
            area = sum(p[1] for p in pairs) / len(pairs)
            above = sum(1 for p in pairs if p[0] > p[1])
            rows.append(
                [
                    self.P("Evidence on lesions", self.s.cell_bold),
                    self.P(
                        f"mean {format_percent(mass, 1)} of positive attribution inside lesions that cover "
                        f"on average {format_percent(area, 1)} of the retina; mass share above area share in "
                        f"{above} of {len(pairs)} images",
                        self.s.cell,
                    ),
                ]
            )
        if rows:
            out.append(_table(rows, [0.3 * self.fw, 0.7 * self.fw], header=False))
        return out

    def method(self) -> list[Flowable]:
        out: list[Flowable] = [CondPageBreak(200), self.heading("method")]
        cohort = isinstance(self.data.manifest.get("cohort_clip"), (int, float))
        method = (
            self.t["text"]["method"].rstrip()
            + " "
            + self.t["text"]["scale_cohort" if cohort else "scale_per_image"]
        )
        out += _paragraphs(method, self.s.body, self.fonts)
        strip = legend_strip(width=300, height=20)
        w = min(0.45 * self.fw, 220)
        bar = Image(io.BytesIO(png_bytes(strip)), width=w, height=w * 20 / 300)
        centre = ParagraphStyle("c", parent=self.s.small, alignment=1)
        right = ParagraphStyle("r", parent=self.s.small, alignment=2)
        scale = Table(
            [
                [
                    self.P("strong against", self.s.small),
                    self.P("none", centre),
                    self.P("strong for", right),
                ]
            ],
            colWidths=[w / 3] * 3,
            hAlign="LEFT",
        )
        scale.setStyle(
            TableStyle(
                [("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0)]
            )
        )
        scale_cells = Table([[bar], [scale]], colWidths=[w], hAlign="LEFT")
        scale_cells.setStyle(
            TableStyle(
                [
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                ]
            )
        )
        tx = self.t["text"]
        legend = [
            self.P(tx["legend_positive"], self.s.small),
            Spacer(1, 2),
            self.P(tx["legend_negative"], self.s.small),
            Spacer(1, 2),
            self.P(tx["legend_neutral"], self.s.small),
        ]
        box = Table([[scale_cells, legend]], colWidths=[w + 10, self.fw - w - 10], hAlign="LEFT")
        box.setStyle(
            TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])
        )
        out += [Spacer(1, 4), box]
        return out

    # per image ------------------------------------------------------------------------------------
    def _prediction(self, r: dict[str, Any]) -> str:
        pred = r.get("predicted")
        if pred is None:
            return "n/a"
        prob = (r.get("probabilities") or {}).get(pred)
        return f"{pred} (p = {prob:.3f})" if isinstance(prob, (int, float)) else str(pred)

    def _overlay_path(self, r: dict[str, Any]) -> Path | None:
        rel = r.get("overlay")
        if not rel:
            return None
        path = (self.out_dir / rel).resolve()
        # The row is data: never let "../" point the report at files outside the audit directory.
        if not path.is_relative_to(self.out_dir.resolve()) or not path.is_file():
            return None
        return path

    def _figures(self, r: dict[str, Any]) -> list[tuple[str, str]]:
        f: list[tuple[str, str]] = []
        if r.get("status") != "ok":
            return [("Status", "could not be read"), ("Reason", r.get("error") or "unknown error")]
        f.append(("Prediction", self._prediction(r)))
        f.append(("Class explained", str(r.get("target", "n/a"))))
        f.append(("Output F(x)", format_number(r.get("score"))))
        f.append(("Baseline F(x\u2032)", format_number(r.get("baseline_score"))))
        score, base = r.get("score"), r.get("baseline_score")
        if isinstance(score, (int, float)) and isinstance(base, (int, float)):
            f.append(("Change F(x) \u2212 F(x\u2032)", format_number(score - base)))
        f.append(("Completeness gap", format_number(r.get("delta"))))
        flagged = r.get("flagged")
        verdict = "NOT MET (flagged)" if flagged else ("met" if flagged is False else "unknown")
        f.append(("Relative error", f"{format_percent(r.get('relative_error'))}: {verdict}"))
        f.append(("Integration steps", str(r.get("n_steps", "n/a"))))
        if isinstance(r.get("pointing_hit"), bool):
            f.append(
                (
                    "Pointing game",
                    "hit (strongest evidence on a lesion)" if r["pointing_hit"] else "miss",
                )
            )
        mass, area = r.get("mask_mass_fraction"), r.get("mask_area_fraction")
        if isinstance(mass, (int, float)) and isinstance(area, (int, float)):
            ratio = f", {mass / area:.1f}\u00d7 the area share" if area > 0 else ""
            f.append(
                (
                    "Evidence on lesions",
                    (
                        f"{format_percent(mass, 1)} of positive attribution on "
                        f"{format_percent(area, 1)} of the retina{ratio}"
                    ),
                )
            )
        lat = r.get("laterality")
        if lat:
            f.append(
                (
                    "Laterality",
                    f"{lat} ({_LATERALITY[str(lat).upper()]})"
                    if str(lat).upper() in _LATERALITY
                    else str(lat),
                )
            )
        if self.include_phi and isinstance(r.get("metadata"), dict):
            for k, v in r["metadata"].items():
                f.append(
                    (str(k), json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)
                )
        return f

    def image_block(self, r: dict[str, Any], max_img_h: float) -> Flowable:
        flagged = r.get("flagged") is True
        title = r["path"]
        tag = (
            "  \u2014  FLAGGED: incomplete attribution"
            if flagged
            else ("  \u2014  NOT READ" if r.get("status") != "ok" else "")
        )
        parts: list[Flowable] = [
            Paragraph(f"<b>{markup(title, self.fonts)}</b>{markup(tag, self.fonts)}", self.s.h2)
        ]
        path = self._overlay_path(r)
        if path is not None:
            try:
                with PILImage.open(path) as im:
                    iw, ih = im.size
                scale = min(self.fw / iw, max_img_h / ih)
                img = Image(str(path), width=iw * scale, height=ih * scale)
                img.hAlign = "LEFT"
                parts.append(img)
                cap = Table(
                    [
                        [
                            self.P("Image as given to the model", self.s.small),
                            self.P("Overlay: green = for, red = against", self.s.small),
                        ]
                    ],
                    colWidths=[iw * scale / 2] * 2,
                    hAlign="LEFT",
                )
                cap.setStyle(
                    TableStyle(
                        [
                            ("LEFTPADDING", (0, 0), (-1, -1), 0),
                            ("TOPPADDING", (0, 0), (-1, -1), 1),
                            ("VALIGN", (0, 0), (-1, -1), "TOP"),
                        ]
                    )
                )
                parts.append(cap)
            except (OSError, ValueError):
                parts.append(self.P("The overlay image could not be opened.", self.s.small))
        elif r.get("status") == "ok":
            parts.append(self.P("No overlay image was found for this image.", self.s.small))
        figs = self._figures(r)
        half = (len(figs) + 1) // 2
        left, right = figs[:half], figs[half:]
        rows = []
        for i in range(half):
            row = [self.P(left[i][0], self.s.cell_bold), self.P(left[i][1], self.s.cell)]
            row += (
                [self.P(right[i][0], self.s.cell_bold), self.P(right[i][1], self.s.cell)]
                if i < len(right)
                else ["", ""]
            )
            rows.append(row)
        extra = [("BACKGROUND", (0, 0), (-1, -1), _FLAG_BG)] if flagged else []
        parts.append(Spacer(1, 3))
        parts.append(
            _table(
                rows,
                [0.22 * self.fw, 0.28 * self.fw, 0.22 * self.fw, 0.28 * self.fw],
                header=False,
                extra=extra,
            )
        )
        parts.append(Spacer(1, 10))
        return KeepTogether(parts)

    def images(self) -> list[Flowable]:
        r = self.t["report"]
        rows = self.data.rows
        shown = rows
        out: list[Flowable] = [CondPageBreak(self.fh * 0.5), self.heading("images")]
        if len(rows) > r["max_images_full"]:
            must = [x for x in rows if x.get("status") != "ok" or x.get("flagged") is True]
            rest = [x for x in rows if not (x.get("status") != "ok" or x.get("flagged") is True)]
            k = min(r["sample_size"], len(rest))
            picked = set(random.Random(_SAMPLE_SEED).sample(range(len(rest)), k))
            chosen = {id(x) for x in must} | {id(rest[i]) for i in picked}
            shown = [x for x in rows if id(x) in chosen]
            out += self.text(
                "sample_note",
                n_total=len(rows),
                n_shown=len(shown),
                n_flagged=len(self.data.flagged),
                n_errors=len(self.data.errors),
                n_sample=k,
                n_rest=len(rest),
            )
        # Room for the text under each image: two blocks must fit a page when images_per_page == 2.
        per_page = r["images_per_page"]
        text_h = 175
        max_img_h = max(80.0, (self.fh - 30) / per_page - text_h)
        out += [self.image_block(x, max_img_h) for x in shown]
        return out

    def provenance(self) -> list[Flowable]:
        m = self.data.manifest
        out: list[Flowable] = [CondPageBreak(150), self.heading("provenance")]
        model = m.get("model") or {}
        items: list[tuple[str, Any]] = [
            ("medig", m.get("medig_version")),
            ("PyTorch", m.get("torch_version")),
            ("Captum", m.get("captum_version")),
            ("MONAI", m.get("monai_version")),
            ("Device", m.get("device")),
            ("Processes", m.get("world_size")),
            ("Model weights SHA-256", model.get("weights_sha256")),
            (
                "Colour scale clip value",
                format_number(m["cohort_clip"])
                if isinstance(m.get("cohort_clip"), (int, float))
                else None,
            ),
            ("Report generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ]
        for k, v in sorted((m.get("settings") or {}).items()):
            items.append(
                (f"setting: {k}", v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
            )
        rows = [
            [self.P(k, self.s.cell_bold), self.P(v, self.s.cell)]
            for k, v in items
            if v not in (None, "")
        ]
        out.append(_table(rows, [0.32 * self.fw, 0.68 * self.fw], header=False))
        return out


def _resolve_template(template: str | os.PathLike | dict[str, Any] | None) -> Template:
    if template is None or isinstance(template, (str, os.PathLike)):
        return load_template(template)
    return merge_template(load_template(None), template, source="template")


def build_report(
    out_dir: str | os.PathLike,
    template: str | os.PathLike | dict[str, Any] | None = None,
    include_phi: bool = False,
) -> Path:
    """Write ``out_dir/report.pdf`` from an audit's ``results.jsonl``, ``manifest.json`` and overlays.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Audit output directory (as written by ``medig audit``).
    template : str, os.PathLike, dict or None
        Path of a TOML template (see ``templates/report.toml``), a dict of the same tables merged over
        the default, or ``None`` for the default.
    include_phi : bool
        Print per-image ``metadata`` entries (which may identify the patient) when rows carry them.
        Without it, no metadata other than laterality is printed.

    Returns
    -------
    pathlib.Path
        Path of the PDF, written atomically (a crash leaves the previous report or none).

    Raises
    ------
    FileNotFoundError
        ``results.jsonl`` is missing.
    medig.report.TemplateError
        The template is invalid (unknown section or key, wrong type).
    """
    out = Path(out_dir)
    tpl = _resolve_template(template)
    data = load_audit(out)
    fonts = get_fonts()
    rep = tpl["report"]
    pagesize = A4 if str(rep["page_size"]).upper() == "A4" else letter
    margin = 18 * mm
    fw, fh = pagesize[0] - 2 * margin, pagesize[1] - 2 * margin
    report = _Report(out, data, tpl, include_phi, fonts, fw, fh)
    builders: dict[str, Callable[[], list[Flowable]]] = {
        "summary": report.summary,
        "completeness": report.completeness,
        "flagged": report.flagged,
        "errors": report.errors,
        "localisation": report.localisation,
        "method": report.method,
        "images": report.images,
        "provenance": report.provenance,
    }
    story: list[Flowable] = report.cover()
    for name in rep["sections"]:
        story += builders[name]()
    canvas_cls = _numbered_canvas(
        rep["title"], rep["institution"], rep["footer_disclaimer"], fonts, margin
    )
    target = out / "report.pdf"
    with atomic_path(target) as tmp:
        doc = SimpleDocTemplate(
            str(tmp),
            pagesize=pagesize,
            leftMargin=margin,
            rightMargin=margin,
            topMargin=margin,
            bottomMargin=margin,
            title=rep["title"],
            author=rep["institution"] or "medig",
            subject="Integrated Gradients audit",
            creator="medig",
        )
        doc.build(story, canvasmaker=canvas_cls)
    return target
