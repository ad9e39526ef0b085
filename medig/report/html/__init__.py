# SPDX-License-Identifier: Apache-2.0
"""The cohort browser: ``report.html``, a self-contained page that opens offline from ``file://``.

``build_html(out_dir)`` reads the same ``results.jsonl`` and ``manifest.json`` as the PDF and
writes ``report.html`` beside them; its script and style (``browser.js``, ``browser.css``) ship
in this package.
"""

from __future__ import annotations

from medig.report.html.builder import HTML_NAME, build_html, render_html

__all__ = ["HTML_NAME", "build_html", "render_html"]
