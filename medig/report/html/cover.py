# SPDX-License-Identifier: Apache-2.0
"""The static parts of the HTML report, written as escaped HTML text: the cover (the PDF's
summary and its "Can the attributions be trusted?" block), the cohort charts and the list of
images that could not be explained."""

from __future__ import annotations

import math
from collections import Counter
from html import escape
from typing import Any

from medig.report.data import relative_error_bins
from medig.report.html.svg import BLUE, ORANGE, Bar, bar_chart
from medig.report.layout import ReportContext
from medig.report.quality import quality_counts
from medig.report.sections import summary_facts, summary_lines
from medig.report.trust import VERDICT_WORDS, thresholds_of, trust_rows

__all__ = ["charts_html", "cover_html", "problems_html"]

_QUALITY = {"gradeable": "gradeable", "ungradeable": "ungradeable",
            "not_fundus": "not fundus", "skipped": "skipped"}


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def cover_html(ctx: ReportContext) -> str:
    """Title, the summary sentences and table, notes, the trust block and its two charts."""
    rep = ctx.t["report"]
    out = ['<section id="summary" class="tab" data-tab="summary">']
    out.append(f'<h2>{_e(ctx.t["headings"]["summary"])}</h2><ul class="key">')
    out += [f"<li>{_e(line)}</li>" for line in summary_lines(ctx)]
    out.append('</ul><table class="facts"><tbody>')
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary_facts(ctx)]
    out.append("</tbody></table>")
    out += [f'<p class="note">Note: {_e(note)}</p>' for note in ctx.data.notes]
    out.append(f'<h2>{_e(ctx.t["headings"]["trust"])}</h2><table class="trust"><thead><tr>'
               "<th>Check</th><th>Result</th><th>What it means, what to do</th></tr></thead>"
               "<tbody>")
    for name, verdict, result, means in trust_rows(ctx):
        out.append(f'<tr><td class="v-{verdict}"><b>{_e(VERDICT_WORDS[verdict])}</b> '
                   f"{_e(name)}</td><td>{_e(result)}</td><td class=\"means\">{_e(means)}</td></tr>")
    out.append('</tbody></table><div class="charts">')
    out += [c for c in (_completeness_chart(ctx), _agreement_chart(ctx)) if c]
    out.append("</div>")
    if rep["disclaimer"]:
        out.append(f'<p class="disclaimer">{_e(" ".join(str(rep["disclaimer"]).split()))}</p>')
    out.append("</section>")
    return "".join(out)


def _completeness_chart(ctx: ReportContext) -> str:
    ok = [r for r in ctx.data.ok if _num(r.get("relative_error")) is not None]
    if not ok:
        return ""
    bins = relative_error_bins([_num(r.get("relative_error")) or 0.0 for r in ok], ctx.tol,
                               flags=[r.get("flagged") is True for r in ok])
    bars = [Bar(b.label, b.count, b.flagged or 0) for b in bins]
    marker = None
    if ctx.tol is not None:
        marker = next((i + 1.0 for i, b in enumerate(bins) if abs(b.hi - ctx.tol) < 1e-12), None)
    return bar_chart(bars, "Completeness error (images per bin)",
                     "relative error |delta| / |F(x) - F(x')|; orange: flagged", marker,
                     f"tolerance {ctx.tol_text()}")


def _agreement_chart(ctx: ReportContext) -> str:
    values = [v for r in ctx.data.ok if (v := _num(r.get("baseline_agreement"))) is not None]
    if not values:
        return ""
    limit = thresholds_of(ctx)["baseline_agreement_min"]
    edges = [round(0.1 * k, 1) for k in range(11)]
    bars = [Bar("<0", sum(v < 0 for v in values), colour=ORANGE if 0 < limit else BLUE)]
    for lo, hi in zip(edges, edges[1:]):
        n = sum(lo <= v < hi or (hi == 1.0 and v >= 1.0) for v in values)
        bars.append(Bar(f"{lo:g}", n, colour=ORANGE if lo < limit else BLUE))
    return bar_chart(bars, "Baseline agreement (images per bin)",
                     "rank correlation of the maps from the baselines (bin starts)",
                     1 + limit / 0.1, f"flagged below {limit:.2f}")


def _faithfulness_chart(ctx: ReportContext) -> str:
    values = [v for r in ctx.data.ok if (v := _num(r.get("faithfulness"))) is not None]
    if not values:
        return ""
    limit = thresholds_of(ctx)["faithfulness_min"]
    edges = sorted({-0.2, -0.1, 0.0, 0.1, 0.2, 0.3, round(limit, 6)})
    bounds = [-math.inf, *edges, math.inf]
    bars = []
    for lo, hi in zip(bounds, bounds[1:]):
        n = sum(lo < v <= hi for v in values)
        label = (f"\u2264 {hi:g}" if math.isinf(lo) else f"> {lo:g}" if math.isinf(hi)
                 else f"{lo:g} to {hi:g}")
        bars.append(Bar(label, n, colour=ORANGE if hi <= limit else BLUE))
    marker = 1.0 + edges.index(round(limit, 6))
    return bar_chart(bars, "Faithfulness (images per bin)",
                     "deletion AUC gain over random removal, (random - map) / range", marker,
                     f"not faithful at or below {limit:g}")


def _quality_chart(ctx: ReportContext) -> str:
    counts = quality_counts(ctx.data.rows)
    if not any(counts.values()):
        return ""
    bars = [Bar(_QUALITY[k], v, colour=BLUE if k == "gradeable" else ORANGE)
            for k, v in counts.items()]
    return bar_chart(bars, "Image quality (images)", "the quality gate's verdicts")


def _prediction_by_quality(ctx: ReportContext) -> str:
    rows = [r for r in ctx.data.rows if r.get("status") != "error"]
    if not rows:
        return ""
    verdicts = [q for q in ("gradeable", "ungradeable", "not_fundus")
                if any(r.get("quality") == q for r in rows)]
    cols = verdicts + (["no verdict"] if any(r.get("quality") not in verdicts for r in rows)
                       else [])
    table = Counter((str(r["predicted"]) if r.get("predicted") is not None else "not explained",
                     r.get("quality") if r.get("quality") in verdicts else "no verdict")
                    for r in rows)
    preds = [c for c in ctx.data.class_names if any(k[0] == c for k in table)]
    preds += sorted({k[0] for k in table} - set(preds))
    out = ['<table class="xtab"><caption>Prediction \u00d7 image quality (images)</caption>'
           "<thead><tr><th>Prediction</th>"]
    out += [f"<th>{_e(_QUALITY.get(c, c))}</th>" for c in cols]
    out.append("<th>all</th></tr></thead><tbody>")
    for p in preds:
        cells = [table.get((p, c), 0) for c in cols]
        out.append(f"<tr><th>{_e(p)}</th>" + "".join(f"<td>{n}</td>" for n in cells)
                   + f"<td>{sum(cells)}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def charts_html(ctx: ReportContext) -> str:
    """The cohort charts: completeness, agreement, faithfulness, quality, prediction x quality."""
    parts = [_completeness_chart(ctx), _agreement_chart(ctx), _faithfulness_chart(ctx),
             _quality_chart(ctx), _prediction_by_quality(ctx)]
    body = "".join(p for p in parts if p) or "<p>No figures to chart.</p>"
    return (f'<section id="charts" class="tab" data-tab="charts" hidden><h2>Cohort charts</h2>'
            f'<div class="charts">{body}</div></section>')


def problems_html(ctx: ReportContext) -> str:
    """Images that could not be read (with the reason) and those the quality gate skipped."""
    out = ['<section id="problems" class="tab" data-tab="problems" hidden>',
           f'<h2>{_e(ctx.t["headings"]["errors"])}</h2>']
    errors = ctx.data.errors
    if errors:
        out.append('<table class="problems"><thead><tr><th>Image</th><th>Reason</th></tr>'
                   "</thead><tbody>")
        out += [f'<tr><td class="p">{_e(r["path"])}</td>'
                f'<td>{_e(r.get("error") or "unknown error")}</td></tr>' for r in errors]
        out.append("</tbody></table>")
    else:
        out.append("<p>Every image could be read.</p>")
    skipped = ctx.data.skipped
    if skipped:
        out.append('<h3>Skipped as not gradeable</h3><table class="problems"><thead><tr>'
                   "<th>Image</th><th>Why</th></tr></thead><tbody>")
        out += [f'<tr><td class="p">{_e(r["path"])}</td>'
                f'<td>{_e("; ".join(r.get("quality_reasons") or []) or "n/a")}</td></tr>'
                for r in skipped]
        out.append("</tbody></table>")
    if ctx.data.bad_lines:
        out.append(f"<p>{ctx.data.bad_lines} line(s) of results.jsonl could not be parsed.</p>")
    out.append("</section>")
    return "".join(out)

