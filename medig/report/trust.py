# SPDX-License-Identifier: Apache-2.0
"""The report's "Can the attributions be trusted?" block, the per-image trust figures and the
flags in each image's heading.

The block has one row per check (completeness, baseline agreement, faithfulness, model-randomisation
sanity check): a verdict, the figures, and one plain-language sentence from the template saying what
it means and what to do. Two small charts follow: the distribution of baseline agreement and the
similarity of the maps after each randomised stage. Figures come from ``results.jsonl`` (per image)
and ``manifest.json`` (``trust_checks``: thresholds and the sanity check).
"""

from __future__ import annotations

import math
from typing import Any

from reportlab.graphics.shapes import Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.platypus import CondPageBreak, Flowable, Table, TableStyle

from medig.checks import thresholds
from medig.report.layout import ReportContext, fill, format_percent, table
from medig.report.rows import ResultRow
from medig.report.tolerance import accuracy_phrase, map_error_of, map_tol_of

__all__ = ["VERDICT_WORDS", "agreement_chart", "heading_flags", "sanity_chart", "thresholds_of",
           "trust", "trust_figures", "trust_rows"]

_GOOD = colors.HexColor("#dcefdc")
_WARN = colors.HexColor("#fdecd8")
_BAD = colors.HexColor("#f6d5d5")
_NONE = colors.HexColor("#eeeeee")
_BAR = colors.HexColor("#4a7fb5")
_LOW = colors.HexColor("#d9822b")
_LIMIT = colors.HexColor("#b22222")

_DEFAULT_THRESHOLDS = thresholds.as_dict()  # for manifests that do not record them


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _thresholds(ctx: ReportContext) -> dict[str, float]:
    found = ((ctx.data.manifest.get("trust_checks") or {}).get("thresholds") or {})
    out = dict(_DEFAULT_THRESHOLDS)
    out.update({k: float(v) for k, v in found.items() if _num(v) is not None})
    return out


def thresholds_of(ctx: ReportContext) -> dict[str, float]:
    """The trust checks' thresholds recorded in the manifest (defaults where it has none)."""
    return _thresholds(ctx)


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _f2(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


# ------------------------------------------------------------------------------------ the block
def _completeness_row(ctx: ReportContext) -> tuple[str, str, str]:
    ok, flagged = ctx.data.ok, ctx.data.flagged
    if not ok:
        return "none", "no explained images", "trust_completeness"
    verdict = "good" if not flagged else "warn"
    worst = max((e for r in ok if r.get("flagged") is False
                 if (e := map_error_of(r)) is not None), default=None)
    accurate = accuracy_phrase(worst)
    if map_tol_of(ctx.data.manifest) is None or accurate is None:
        result = (f"{len(ok) - len(flagged)} of {len(ok)} maps add up to the change in output "
                  f"(tolerance {ctx.tol_text()}); {len(flagged)} flagged \u201cincomplete\u201d")
    else:
        result = (f"{len(ok) - len(flagged)} of {len(ok)} maps add up to the change in output "
                  f"(tolerance {ctx.tol_text()}) and are {accurate}; {len(flagged)} flagged "
                  f"(completeness or map accuracy not met)")
    return verdict, result, "trust_completeness"


def _agreement_row(ctx: ReportContext, limit: float) -> tuple[str, str, str]:
    values = [v for r in ctx.data.ok if (v := _num(r.get("baseline_agreement"))) is not None]
    if not values:
        return "none", "not measured (a single baseline, or the check was switched off)", \
            "trust_agreement"
    low = sum(v < limit for v in values)
    result = (f"median {_f2(_quantile(values, 0.5))} (middle half {_f2(_quantile(values, 0.25))}"
              f" to {_f2(_quantile(values, 0.75))}); {low} of {len(values)} images below "
              f"{limit:.2f}, flagged \u201cbaseline-dependent\u201d")
    return ("good" if low == 0 else "warn"), result, "trust_agreement"


def _faithfulness_row(ctx: ReportContext, limit: float) -> tuple[str, str, str]:
    values = [v for r in ctx.data.ok if (v := _num(r.get("faithfulness"))) is not None]
    if not values:
        return "none", "not measured (the check was switched off)", "trust_faithfulness"
    beat = sum(v > limit for v in values)
    result = (f"{beat} of {len(values)} maps ({format_percent(beat / len(values), 0)}) beat "
              f"random pixel removal; {len(values) - beat} flagged \u201cnot-faithful\u201d")
    return ("good" if beat == len(values) else "warn"), result, "trust_faithfulness"


def _sanity(ctx: ReportContext) -> dict[str, Any]:
    return (ctx.data.manifest.get("trust_checks") or {}).get("sanity_check") or {}


def _sanity_row(ctx: ReportContext, limit: float) -> tuple[str, str, str]:
    sanity = _sanity(ctx)
    status = sanity.get("status")
    sims = [_num(v) for v in sanity.get("similarity") or []]
    last = sims[-1] if sims else None
    n = len(sanity.get("images") or [])
    if status == "passed":
        return "good", (f"PASSED on {n} images: the maps changed when the model's layers were "
                        f"randomised (similarity {_f2(last)}, below {limit:.2f})"), \
            "trust_sanity_passed"
    if status == "failed":
        return "bad", (f"FAILED on {n} images: the maps stayed alike when the model's layers were"
                       f" randomised (similarity {_f2(last)}, not below {limit:.2f})"), \
            "trust_sanity_failed"
    reason = sanity.get("reason") or "not recorded for this audit"
    return "none", f"not run: {reason}", "trust_sanity_not_run"


_FILL = {"good": _GOOD, "warn": _WARN, "bad": _BAD, "none": _NONE}
_WORD = {"good": "OK", "warn": "CHECK", "bad": "FAILED", "none": "NOT RUN"}


def trust_rows(ctx: ReportContext) -> list[tuple[str, str, str, str]]:
    """The block's rows: (check, verdict ``good|warn|bad|none``, result, what it means)."""
    limits = _thresholds(ctx)
    rows = [
        ("Completeness", *_completeness_row(ctx)),
        ("Baseline agreement", *_agreement_row(ctx, limits["baseline_agreement_min"])),
        ("Faithfulness", *_faithfulness_row(ctx, limits["faithfulness_min"])),
        ("Sanity check (model randomisation)",
         *_sanity_row(ctx, limits["randomisation_max_similarity"])),
    ]
    baselines = (ctx.data.manifest.get("settings") or {}).get("baselines") or []
    names = [str(b) for b in baselines] if isinstance(baselines, list) else [str(baselines)]
    values = dict(tolerance=ctx.tol_text(), agreement_min=f"{limits['baseline_agreement_min']:.2f}",
                  similarity_max=f"{limits['randomisation_max_similarity']:.2f}",
                  baselines=" and ".join(names) if len(names) < 3 else ", ".join(names))
    return [(name, verdict, result, " ".join(fill(ctx.t["text"][key], values).split()))
            for name, verdict, result, key in rows]


#: The verdict words of the block.
VERDICT_WORDS = _WORD


def trust(ctx: ReportContext) -> list[Flowable]:
    """The "Can the attributions be trusted?" block."""
    limits = _thresholds(ctx)
    out: list[Flowable] = [CondPageBreak(250), ctx.heading("trust")]
    data: list[list[Any]] = [[ctx.P(h, ctx.s.cell_bold) for h in
                              ("Check", "Result", "What it means, what to do")]]
    style = []
    for i, (name, verdict, result, means) in enumerate(trust_rows(ctx), start=1):
        data.append([[ctx.P(_WORD[verdict], ctx.s.cell_bold), ctx.P(name, ctx.s.cell)],
                     ctx.P(result, ctx.s.cell),
                     ctx.P(means, ctx.s.small)])
        style.append(("BACKGROUND", (0, i), (0, i), _FILL[verdict]))
    widths = [0.2 * ctx.fw, 0.34 * ctx.fw, 0.46 * ctx.fw]
    out.append(table(data, widths, extra=style))
    charts = _charts(ctx, limits)
    if charts is not None:
        out.append(charts)
    return out


def _charts(ctx: ReportContext, limits: dict[str, float]) -> Flowable | None:
    values = [v for r in ctx.data.ok if (v := _num(r.get("baseline_agreement"))) is not None]
    sanity = _sanity(ctx)
    sims = [_num(v) for v in sanity.get("similarity") or []]
    w, h = 0.48 * ctx.fw, 105.0
    cells = []
    if values:
        cells.append(agreement_chart(values, limits["baseline_agreement_min"], ctx.fonts.regular,
                                     w, h))
    if sims and any(s is not None for s in sims):
        cells.append(sanity_chart(sims, list(sanity.get("stages") or []),
                                  limits["randomisation_max_similarity"], ctx.fonts.regular, w, h))
    if not cells:
        return None
    box = Table([cells], colWidths=[0.5 * ctx.fw] * len(cells), hAlign="LEFT")
    box.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0),
                             ("TOPPADDING", (0, 0), (-1, -1), 6)]))
    return box


# ------------------------------------------------------------------------------------ charts
def agreement_chart(values: list[float], limit: float, font: str, width: float = 240,
                    height: float = 105) -> Drawing:
    """Histogram of per-image baseline agreement (bins of 0.1 from below 0 to 1), the bins below
    the threshold in orange, a dashed line at the threshold."""
    edges = [round(0.1 * k, 1) for k in range(11)]
    counts = [sum(1 for v in values if v < 0)] + [
        sum(1 for v in values if lo <= v < hi or (hi == 1.0 and v >= 1.0))
        for lo, hi in zip(edges, edges[1:])]
    d = Drawing(width, height)
    x0, y0, cw, ch = 24, 24, width - 32, height - 44
    top = max(counts + [1])
    bw = cw / len(counts)
    for i, c in enumerate(counts):
        lo = -math.inf if i == 0 else edges[i - 1]
        bh = ch * c / top
        d.add(Rect(x0 + i * bw + 1, y0, bw - 2, bh, fillColor=_LOW if lo < limit else _BAR,
                   strokeColor=None))
        if c:
            d.add(String(x0 + (i + 0.5) * bw, y0 + bh + 2, str(c), fontName=font, fontSize=6,
                         textAnchor="middle"))
    d.add(Line(x0, y0, x0 + cw, y0, strokeColor=colors.black, strokeWidth=0.5))
    for i, label in ((0, "<0"), (1, "0"), (6, "0.5"), (11, "1")):
        d.add(String(x0 + i * bw, y0 - 9, label, fontName=font, fontSize=6,
                     textAnchor="middle"))
    lx = x0 + bw * (1 + limit / 0.1)
    d.add(Line(lx, y0, lx, y0 + ch + 4, strokeColor=_LIMIT, strokeWidth=0.8,
               strokeDashArray=[3, 2]))
    d.add(String(x0, height - 10, "Baseline agreement per image (images per bin)", fontName=font,
                 fontSize=7))
    d.add(String(x0 + cw / 2, 3, f"rank correlation black vs blur map; flagged below {limit:.2f}",
                 fontName=font, fontSize=6, textAnchor="middle"))
    return d


def sanity_chart(similarity: list[float | None], stages: list[str], limit: float, font: str,
                 width: float = 240, height: float = 105) -> Drawing:
    """Median similarity of the maps after each randomised stage, with the pass threshold."""
    d = Drawing(width, height)
    x0, y0, cw, ch = 24, 24, width - 36, height - 44
    n = len(similarity)
    xs = [x0 + cw * (i + 0.5) / n for i in range(n)]

    def y(v: float) -> float:
        return y0 + ch * max(0.0, min(1.0, v))

    d.add(Line(x0, y0, x0 + cw, y0, strokeColor=colors.black, strokeWidth=0.5))
    d.add(Line(x0, y0, x0, y0 + ch, strokeColor=colors.black, strokeWidth=0.5))
    for v in (0.0, 0.5, 1.0):
        d.add(String(x0 - 3, y(v) - 2, f"{v:g}", fontName=font, fontSize=6, textAnchor="end"))
    d.add(Line(x0, y(limit), x0 + cw, y(limit), strokeColor=_LIMIT, strokeWidth=0.8,
               strokeDashArray=[3, 2]))
    points = [(x, y(v)) for x, v in zip(xs, similarity) if v is not None]
    if len(points) > 1:
        d.add(PolyLine([c for p in points for c in p], strokeColor=_BAR, strokeWidth=1.2))
    for (x, yy), v in zip(points, [v for v in similarity if v is not None]):
        d.add(Rect(x - 2, yy - 2, 4, 4, fillColor=_BAR, strokeColor=None))
        d.add(String(x, yy + 4, f"{v:.2f}", fontName=font, fontSize=6, textAnchor="middle"))
    names = _short_names(stages, n)
    for i, x in enumerate(xs):
        label = (names[i] if i == 0 else "+ " + names[i])[:14]
        d.add(String(x, y0 - 9, label, fontName=font, fontSize=6, textAnchor="middle"))
    d.add(String(x0, height - 10, "Sanity check: map similarity after randomising",
                 fontName=font, fontSize=7))
    d.add(String(x0 + cw / 2, 3, f"layers randomised, from the output backwards; passes below "
                 f"{limit:.2f} (dashed)", fontName=font, fontSize=6, textAnchor="middle"))
    return d


def _short_names(stages: list[str], n: int) -> list[str]:
    """Stage names without the wrapper prefix they share (``model.fc`` -> ``fc``)."""
    parts = [s.split(".") for s in stages[:n]]
    shared = 0
    while parts and all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    names = [".".join(p[shared:]) for p in parts]
    return names + [str(i + 1) for i in range(len(names), n)]


# ------------------------------------------------------------------------------------ per image
def trust_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """Baseline agreement, faithfulness and occlusion agreement of one image, when measured."""
    limits = _thresholds(ctx)
    f: list[tuple[str, str]] = []
    agreement = _num(r.get("baseline_agreement"))
    if agreement is not None:
        limit = limits["baseline_agreement_min"]
        verdict = ("flagged: baseline-dependent" if agreement < limit
                   else f"not flagged (flag below {limit:.2f})")
        text = f"{agreement:.2f}: {verdict}"
        overlap = _num(r.get("baseline_topk_overlap"))
        if overlap is not None:
            text += f"; strongest 5% shared: {format_percent(overlap, 0)}"
        f.append(("Baseline agreement", text))
    faithful = _num(r.get("faithfulness"))
    if faithful is not None:
        beats = faithful > limits["faithfulness_min"]
        verdict = "beats random removal" if beats else "flagged: does not beat random removal"
        f.append(("Faithfulness", f"{faithful:+.2f}: {verdict}"))
    occlusion = _num(r.get("occlusion_agreement"))
    if occlusion is not None:
        f.append(("Occlusion agreement", f"{occlusion:.2f} (rank correlation with occlusion)"))
    return f


def heading_flags(r: ResultRow) -> str:
    """Trust flags for an image's heading, other than "incomplete" (shown as FLAGGED already)."""
    flags = [f for f in (r.get("trust_flags") or []) if f != "incomplete"]
    return f"  \u2014  check: {', '.join(flags)}" if flags else ""
