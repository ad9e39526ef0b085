# SPDX-License-Identifier: Apache-2.0
"""PDF report of a ``medig audit`` output directory (reportlab platypus).

``build_report(out_dir)`` reads ``results.jsonl``, ``manifest.json`` and the overlay PNGs and writes
``report.pdf``; the wording, title, institution and section order come from an editable TOML template
(``templates/report.toml``, loaded with :func:`load_template`). ``build_html(out_dir)`` writes
``report.html``, the cohort browser, from the same files (:mod:`medig.report.html`).
"""

from __future__ import annotations

from medig.report.builder import build_report
from medig.report.html import build_html
from medig.report.layout import format_number, format_percent
from medig.report.template import SECTIONS, TemplateError, default_template_path, load_template

__all__ = [
    "SECTIONS",
    "TemplateError",
    "build_html",
    "build_report",
    "default_template_path",
    "format_number",
    "format_percent",
    "load_template",
]
