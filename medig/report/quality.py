# SPDX-License-Identifier: Apache-2.0
"""The report's image-quality parts: the counts on the first page, the section listing the
photographs that are not gradeable (with what the model predicted for them), and the quality
lines beside each image. Wording lives in ``templates/report.toml``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from reportlab.platypus import CondPageBreak, Flowable

from medig.report.layout import ReportContext, fill, format_percent, table
from medig.report.rows import ResultRow
from medig.report.targets import prediction_text

__all__ = ["confident", "quality", "quality_counts", "quality_figures", "quality_key_lines",
           "quality_rows", "quality_tag"]

#: A prediction at least this probable counts as confident (in the summary of the section).
CONFIDENT = 0.9

_VERDICT = {"gradeable": "gradeable", "ungradeable": "ungradeable",
            "not_fundus": "not a fundus photograph"}
_SHAPE = {"circle": "circular field", "cut": "circular field cut by the frame",
          "full_frame": "full frame, no black border", "none": "no field of view"}


def quality_rows(ctx: ReportContext) -> list[ResultRow]:
    """Rows that carry a quality verdict (none when the audit ran with ``--quality off``)."""
    return [r for r in ctx.data.rows if r.get("quality") in _VERDICT]


def _not_gradeable(ctx: ReportContext) -> list[ResultRow]:
    order = {"not_fundus": 0, "ungradeable": 1}
    bad = [r for r in quality_rows(ctx) if r["quality"] != "gradeable"]
    return sorted(bad, key=lambda r: (order.get(r["quality"] or "", 2), r["path"]))


def _top_probability(r: ResultRow) -> float | None:
    probs = r.get("probabilities") or {}
    pred = r.get("predicted")
    value = probs.get(pred) if pred is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def confident(r: ResultRow) -> bool:
    """Whether the model's prediction for row ``r`` is confident (p >= :data:`CONFIDENT`)."""
    p = _top_probability(r)
    return p is not None and p >= CONFIDENT


def quality_counts(rows: Sequence[ResultRow]) -> dict[str, int]:
    """How many rows are gradeable, ungradeable, not a fundus photograph, and skipped."""
    verdicts = Counter(r.get("quality") for r in rows if r.get("quality"))
    return {"gradeable": verdicts["gradeable"], "ungradeable": verdicts["ungradeable"],
            "not_fundus": verdicts["not_fundus"],
            "skipped": sum(r.get("status") == "skipped" for r in rows)}


def quality_key_lines(ctx: ReportContext) -> list[str]:
    """The first page's line on image quality (empty when the gate was off)."""
    rows = quality_rows(ctx)
    if not rows:
        return []
    c = quality_counts(rows)
    bad = _not_gradeable(ctx)
    lines = [fill(ctx.t["text"]["quality_summary"],
                  {"n_gradeable": c["gradeable"], "n_ungradeable": c["ungradeable"],
                   "n_not_fundus": c["not_fundus"], "n_skipped": len(ctx.data.skipped)})]
    sure = [r for r in bad if confident(r)]
    if sure:
        lines.append(fill(ctx.t["text"]["quality_confident"],
                          {"n_confident": len(sure), "n_bad": len(bad),
                           "threshold": f"{CONFIDENT:g}"}))
    return [" ".join(line.split()) for line in lines]


def quality(ctx: ReportContext) -> list[Flowable]:
    """Section: the photographs that are not gradeable, why, and what the model said."""
    out: list[Flowable] = [CondPageBreak(120), ctx.heading("quality")]
    rows = quality_rows(ctx)
    if not rows:
        return out + ctx.text("quality_off")
    bad = _not_gradeable(ctx)
    if not bad:
        return out + ctx.text("no_quality_issues")
    mode = (ctx.data.manifest.get("quality") or {}).get("mode") \
        or (ctx.data.manifest.get("settings") or {}).get("quality")
    out += ctx.text("quality_intro")
    if mode == "skip" or ctx.data.skipped:
        out += ctx.text("quality_skipped")
    else:
        out += ctx.text("quality_flagged")
    data: list[list[Any]] = [[ctx.P(h, ctx.s.cell_bold) for h in
                              ("Image", "Verdict", "Why", "Model prediction")]]
    for r in bad:
        if r.get("status") == "skipped":
            said = ctx.t["text"]["quality_not_explained"]
        else:
            said = prediction_text(r) + (" \u2014 confident" if confident(r) else "")
        data.append([ctx.P(r["path"], ctx.s.cell), ctx.P(_VERDICT[r["quality"] or ""], ctx.s.cell),
                     ctx.P("; ".join(r.get("quality_reasons") or []) or "n/a", ctx.s.cell),
                     ctx.P(said, ctx.s.cell)])
    out.append(table(data, [0.3 * ctx.fw, 0.14 * ctx.fw, 0.32 * ctx.fw, 0.24 * ctx.fw]))
    return out


def quality_tag(r: ResultRow) -> str:
    """Suffix of an image's title: its verdict when it is not gradeable."""
    verdict = r.get("quality")
    if r.get("status") == "skipped":
        return "  \u2014  SKIPPED: " + _VERDICT.get(verdict or "", "not gradeable").upper()
    if verdict in ("ungradeable", "not_fundus"):
        return "  \u2014  " + _VERDICT[verdict].upper()
    return ""


def quality_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """Figure group: the quality verdict with its reasons, and the measures behind it."""
    verdict = r.get("quality")
    if verdict not in _VERDICT:
        return []
    reasons = "; ".join(r.get("quality_reasons") or [])
    line = _VERDICT[verdict] + (f": {reasons}" if reasons else "")
    parts = [_SHAPE.get(r.get("fov_shape") or "", str(r.get("fov_shape")))]
    if isinstance(r.get("fov_fraction"), (int, float)):
        parts[0] += f" ({format_percent(r['fov_fraction'], 0)} of the frame)"
    if isinstance(r.get("sharpness"), (int, float)):
        parts.append(f"sharpness {r['sharpness']:.3f}")
    exposure = [(name, r.get(key)) for name, key in (("washed out", "saturated_fraction"),
                                                     ("dark", "dark_fraction"),
                                                     ("in shadow", "shadow_fraction"))]
    parts += [f"{format_percent(v, 0)} {name}" for name, v in exposure
              if isinstance(v, (int, float)) and v >= 0.005]
    return [("Image quality", line), ("Quality measures", "; ".join(parts))]
