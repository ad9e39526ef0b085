# SPDX-License-Identifier: Apache-2.0
"""Write ``report.html``: one self-contained page that opens from ``file://`` with no network.

The script and the style ship inside medig (``browser.js``, ``browser.css`` beside this module)
and are inlined; a Content-Security-Policy allows exactly those two (by hash) and images from
the audit folder, so nothing can be loaded from elsewhere and no injected script could run.
Images are not copied: the page points at the audit's ``overlays/*.png`` (the photograph beside
its overlay), which the viewer crops into its two halves, and, when the audit averaged several
baselines, at each baseline's own overlay (``report_files/baselines/<baseline>/``). The page depends only on the saved
results, never on the time it is built, so rebuilding it gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from medig.report.data import load_audit, tolerance_of
from medig.report.fonts import get_fonts
from medig.report.html.cover import charts_html, cover_html, problems_html
from medig.report.html.payload import baseline_views, json_for_script, payload
from medig.report.layout import ReportContext
from medig.report.template import resolve_template
from medig.report.trust import thresholds_of
from medig.utils import atomic_write

__all__ = ["HTML_NAME", "build_html", "render_html"]

#: File name of the browser report in the audit folder.
HTML_NAME = "report.html"


def _asset(name: str) -> str:
    return resources.files("medig.report.html").joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _meta(ctx: ReportContext, views: list[dict[str, str]]) -> dict[str, Any]:
    settings = ctx.data.manifest.get("settings") or {}
    baselines = settings.get("baselines", settings.get("baseline")) or []
    return {"thresholds": thresholds_of(ctx), "tolerance": tolerance_of(ctx.data.manifest),
            "baselines": [str(b) for b in baselines] if isinstance(baselines, list)
            else [str(baselines)],
            "baseline_views": views,
            "classes": ctx.data.class_names}


def render_html(out_dir: str | os.PathLike, template: str | os.PathLike | dict[str, Any] | None
                = None, include_phi: bool = False) -> str:
    """The text of ``report.html`` for an audit folder (see :func:`build_html`)."""
    out = Path(out_dir)
    tpl = resolve_template(template)
    data = load_audit(out)
    # The PDF's context gives the same sentences and verdicts; its page size is not used here.
    ctx = ReportContext(out, data, tpl, include_phi, get_fonts(), 500.0, 700.0)
    views, per_row = baseline_views(out, data)
    script, style = _asset("browser.js"), _asset("browser.css")
    # Images: the audit folder only. 'self' is enough in Chromium; file: is for browsers that give
    # each local file its own origin (Firefox). Neither lets anything load from the network.
    csp = ("default-src 'none'; img-src 'self' file:; "
           f"style-src {_sha256(style)}; script-src {_sha256(script)}; "
           "base-uri 'none'; form-action 'none'")
    rep = tpl["report"]
    n_err = len(data.errors)
    sub = " \u00b7 ".join(_e(x) for x in (rep["subtitle"], rep["institution"],
                                          rep["prepared_for"]) if x)
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(rep['title'])}</title><style>{style}</style></head><body>",
        f'<header><div class="brand"><h1>{_e(rep["title"])}</h1>'
        f'<span class="sub">{sub}</span></div><nav id="tabs">'
        '<button type="button" data-tab="summary" class="on">Summary</button>'
        f'<button type="button" data-tab="images">Images ({len(data.rows)})</button>'
        '<button type="button" data-tab="charts">Charts</button>'
        f'<button type="button" data-tab="problems">Not read ({n_err})</button></nav></header>',
        "<main>", cover_html(ctx),
        '<section id="images" class="tab" data-tab="images" hidden>'
        '<aside id="facets"><input id="search" type="search" placeholder="Search names\u2026"'
        ' aria-label="Search image names"><p id="count"></p></aside>'
        '<div id="table" role="table" aria-label="Images"><div id="thead" role="row"></div>'
        '<div id="tbody" role="rowgroup"></div></div>'
        '<div id="viewer" aria-live="polite"><p class="hint">Select an image (click a row, or '
        "use \u2193 / \u2191 or j / k).</p></div></section>",
        charts_html(ctx), problems_html(ctx), "</main>",
        '<noscript><p class="note">The image table and viewer need JavaScript; the summary, '
        "charts and problems above are complete without it.</p></noscript>",
        '<script type="application/json" id="medig-data">',
        json_for_script(payload(data, _meta(ctx, views), include_phi, per_row)),
        f"</script><script>{script}</script></body></html>\n",
    ]
    return "".join(parts)


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def build_html(out_dir: str | os.PathLike, template: str | os.PathLike | dict[str, Any] | None
               = None, include_phi: bool = False) -> Path:
    """Write ``out_dir/report.html``, the cohort browser, from the audit's saved results.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Audit output directory (as written by ``medig audit``).
    template : str, os.PathLike, dict or None
        The report template (title, headings, the trust block's wording), as for the PDF.
    include_phi : bool
        Add per-image ``metadata`` (which may identify the patient) when rows carry it.

    Returns
    -------
    pathlib.Path
        Path of the page, written atomically.

    Raises
    ------
    FileNotFoundError
        ``results.jsonl`` is missing.
    """
    target = Path(out_dir) / HTML_NAME
    atomic_write(target, render_html(out_dir, template, include_phi))
    return target
