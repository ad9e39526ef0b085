# SPDX-License-Identifier: Apache-2.0
"""The report's look: number formats, paragraph styles, tables, the page canvas, and the
:class:`ReportContext` every section is written with."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import Flowable, Paragraph, Table, TableStyle

from medig.report.data import AuditData, tolerance_of
from medig.report.fonts import FontSet, markup
from medig.report.template import Template

__all__ = ["ReportContext", "format_number", "format_percent"]

GREY = colors.HexColor("#555555")
RULE = colors.HexColor("#bbbbbb")
FLAG_BG = colors.HexColor("#fdecd8")


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


def format_time(value: Any) -> str:
    if not value:
        return "n/a"
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    zone = t.strftime(" %Z") if t.tzinfo else ""
    return t.strftime("%Y-%m-%d %H:%M") + (zone if zone.strip() else "")


def fill(text: str, values: dict[str, Any]) -> str:
    class _Keep(dict):  # unknown {names} in a hospital's wording are printed as written
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        return text.format_map(_Keep(values))
    except (ValueError, IndexError):  # stray braces in the template text
        return text


# --------------------------------------------------------------------------------------------- styles
class Styles:
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
            "subtitle", parent=base, fontSize=10.5, leading=13, textColor=GREY, spaceAfter=10
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
            textColor=GREY,
            borderColor=RULE,
            borderWidth=0.5,
            borderPadding=5,
            spaceBefore=8,
        )


def para(text: Any, style: ParagraphStyle, fonts: FontSet, bold: bool = False) -> Paragraph:
    body = markup(text, fonts)
    return Paragraph(f"<b>{body}</b>" if bold else body, style)


def paragraphs(text: str, style: ParagraphStyle, fonts: FontSet) -> list[Flowable]:
    return [
        para(" ".join(block.split()), style, fonts) for block in text.split("\n\n") if block.strip()
    ]


def table(
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
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
    ]
    if header:
        style += [("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black)]
    t.setStyle(TableStyle(style + (extra or [])))
    return t


# --------------------------------------------------------------------------------------------- canvas
def numbered_canvas(
    header_left: str, header_right: str, footer: str, fonts: FontSet, margin: float
) -> type[rl_canvas.Canvas]:
    """A canvas that knows the page count at save time, for "Page X of Y" (two-pass free)."""

    hstyle = ParagraphStyle("hdr", fontName=fonts.regular, fontSize=7.5, leading=9, textColor=GREY)
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
            self.setStrokeColor(RULE)
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


# --------------------------------------------------------------------------------------------- context
class ReportContext:
    """An audit's data, the template and the page geometry, with the helpers sections use."""

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
        self.s = Styles(fonts)
        self.fw = frame_width
        self.fh = frame_height
        self.tol = tolerance_of(data.manifest)

    def P(self, text: Any, style: ParagraphStyle | None = None, bold: bool = False) -> Paragraph:
        return para(text, style or self.s.body, self.fonts, bold)

    def heading(self, key: str) -> Paragraph:
        return self.P(self.t["headings"][key], self.s.h1)

    def text(self, key: str, **values: Any) -> list[Flowable]:
        return paragraphs(fill(self.t["text"][key], values), self.s.body, self.fonts)

    def tol_text(self) -> str:
        return format_percent(self.tol) if self.tol is not None else "the audit's tolerance"

    # sections -----------------------------------------------------------------------------------
