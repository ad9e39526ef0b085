# SPDX-License-Identifier: Apache-2.0
"""Build the PDF report of an audit directory with reportlab platypus."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reportlab.lib.pagesizes import A4, letter
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, SimpleDocTemplate

import medig.report.images as images
import medig.report.quality as quality
import medig.report.reliance as reliance
import medig.report.sections as sections
import medig.report.targets as targets
import medig.report.trust as trust
from medig.report.data import load_audit
from medig.report.fonts import get_fonts
from medig.report.layout import ReportContext, numbered_canvas
from medig.report.template import resolve_template
from medig.utils import atomic_path

__all__ = ["SECTION_BUILDERS", "build_report"]

#: What each name in the template's ``sections`` list builds.
SECTION_BUILDERS: dict[str, Callable[[ReportContext], list[Flowable]]] = {
    "summary": sections.summary,
    "completeness": sections.completeness,
    "flagged": sections.flagged,
    "errors": sections.errors,
    "localisation": sections.localisation,
    "method": sections.method,
    "images": images.images,
    "provenance": sections.provenance,
    "target": targets.target_section,  # what the colours mean
    "trust": trust.trust,
    "quality": quality.quality,
    "reliance": reliance.reliance,  # what the model relies on
}


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
    tpl = resolve_template(template)
    data = load_audit(out)
    fonts = get_fonts()
    rep = tpl["report"]
    pagesize = A4 if str(rep["page_size"]).upper() == "A4" else letter
    margin = 18 * mm
    fw, fh = pagesize[0] - 2 * margin, pagesize[1] - 2 * margin
    ctx = ReportContext(out, data, tpl, include_phi, fonts, fw, fh)
    story: list[Flowable] = sections.cover(ctx)
    for name in rep["sections"]:
        story += SECTION_BUILDERS[name](ctx)
    canvas_cls = numbered_canvas(
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
