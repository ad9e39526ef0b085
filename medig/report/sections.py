# SPDX-License-Identifier: Apache-2.0
"""The cohort report's sections: each a function ``section(ctx) -> flowables``, named in the
template's ``sections`` list (see :data:`medig.report.builder.SECTION_BUILDERS`)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import CondPageBreak, Flowable, Image, Paragraph, Spacer, Table, TableStyle

from medig.report.charts import completeness_chart
from medig.report.data import relative_error_bins
from medig.report.fonts import markup
from medig.report.layout import (
    ReportContext,
    fill,
    format_number,
    format_percent,
    format_time,
    paragraphs,
    table,
)
from medig.report.quality import quality_key_lines
from medig.report.targets import prediction_text
from medig.report.tolerance import (
    accuracy_phrase,
    atol_of,
    map_error_of,
    map_tol_of,
    rule_values,
)
from medig.visualize import legend_strip, png_bytes

__all__ = ["completeness", "cover", "errors", "flagged", "localisation", "method", "provenance",
           "summary", "summary_facts", "summary_lines"]


def cover(ctx: ReportContext) -> list[Flowable]:
    r = ctx.t["report"]
    out: list[Flowable] = [ctx.P(r["title"], ctx.s.title)]
    if r["subtitle"]:
        out.append(ctx.P(r["subtitle"], ctx.s.subtitle))
    lines = [x for x in (r["institution"], r["prepared_for"]) if x]
    out += [ctx.P(x, ctx.s.body) for x in lines]
    out.append(Spacer(1, 4))
    return out


def summary_lines(ctx: ReportContext) -> list[str]:
    """The one-minute read of the first page: plain sentences, before any table."""
    d = ctx.data
    n, n_ok, n_err, n_flag = len(d.rows), len(d.ok), len(d.errors), len(d.flagged)
    n_skip = len(d.skipped)  # skipped by the quality gate
    skipped = f", {n_skip} skipped as not gradeable" if n_skip else ""
    key = [
        f"{n} image{'s' if n != 1 else ''} audited: {n_ok} explained, {n_err} could not be "
        f"read{skipped}.",
        (
            f"{n_flag} of {n_ok} explained image{'s' if n_ok != 1 else ''} "
            f"({format_percent(n_flag / n_ok, 1) if n_ok else 'n/a'}) flagged (completeness or "
            "map accuracy not met: the rules are below); their overlay should not be relied on."
        ),
    ]
    key += quality_key_lines(ctx)
    preds = d.prediction_counts()
    if n_ok and preds:
        key.append(
            "Model predictions: " + ", ".join(f"{k}: {v}" for k, v in preds.items()) + "."
        )
    return key


def summary_facts(ctx: ReportContext) -> list[tuple[str, str]]:
    """The first page's table: (label, value) of the run, the model and the settings."""
    d, m = ctx.data, ctx.data.manifest
    n, n_ok, n_err, n_flag = len(d.rows), len(d.ok), len(d.errors), len(d.flagged)
    n_skip = len(d.skipped)
    model = m.get("model") or {}
    settings = m.get("settings") or {}
    rows: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            rows.append((label, str(value)))

    add(
        "Audit run",
        f"{format_time(m.get('started'))} to {format_time(m.get('finished'))}"
        if m.get("started") or m.get("finished")
        else None,
    )
    add("Images", f"{n} total; {n_ok} explained; {n_err} failed to read; {n_flag} flagged"
        + (f"; {n_skip} skipped (not gradeable)" if n_skip else ""))
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
    atol = atol_of(m)
    add("Completeness tolerance", None if ctx.tol is None else (
        format_percent(ctx.tol) if atol is None else
        f"gap at most the larger of {atol:g} ({rule_values(m, '')['unit']}) and "
        f"{format_percent(ctx.tol)} of the change"))
    map_tol = map_tol_of(m)
    worst = max((e for r in d.ok if r.get("flagged") is False
                 if (e := map_error_of(r)) is not None), default=None)
    add("Map accuracy", None if map_tol is None else (
        f"estimated relative error of each map at most {format_percent(map_tol, 0)}"
        + (f"; unflagged maps {accuracy_phrase(worst)}" if worst is not None else "")))
    if isinstance(m.get("cohort_clip"), (int, float)):
        add(
            "Colour scale",
            f"same for all images (saturates at |attribution| = {format_number(m['cohort_clip'])})",
        )
    return rows


def summary(ctx: ReportContext) -> list[Flowable]:
    d = ctx.data
    n_ok = len(d.ok)
    out: list[Flowable] = [ctx.heading("summary")]
    for line in summary_lines(ctx):
        out.append(Paragraph("\u2022 " + markup(line, ctx.fonts), ctx.s.key))
    out.append(Spacer(1, 6))
    rows: list[list[Any]] = [[ctx.P(label, ctx.s.cell_bold), ctx.P(value, ctx.s.cell)]
                             for label, value in summary_facts(ctx)]
    if rows:
        out.append(table(rows, [0.3 * ctx.fw, 0.7 * ctx.fw], header=False))
    preds = d.prediction_counts()
    if n_ok and preds:
        out.append(Spacer(1, 8))
        out.append(ctx.P("Predictions per class", ctx.s.h2))
        prow: list[list[Any]] = [
            [ctx.P(h, ctx.s.cell_bold) for h in ("Class", "Images", "Share of explained")]
        ]
        for name, count in preds.items():
            prow.append(
                [
                    ctx.P(name, ctx.s.cell),
                    ctx.P(str(count), ctx.s.cell),
                    ctx.P(format_percent(count / n_ok, 1), ctx.s.cell),
                ]
            )
        out.append(table(prow, [0.4 * ctx.fw, 0.2 * ctx.fw, 0.25 * ctx.fw]))
    for note in d.notes:
        out.append(ctx.P("Note: " + note, ctx.s.small))
    disc = ctx.t["report"]["disclaimer"]
    if disc:
        out.append(ctx.P(" ".join(disc.split()), ctx.s.disclaimer))
    return out


def completeness(ctx: ReportContext) -> list[Flowable]:
    errs = [
        float(rel)
        for r in ctx.data.ok
        if isinstance(rel := r.get("relative_error"), (int, float))
    ]
    out: list[Flowable] = [CondPageBreak(230), ctx.heading("completeness")]
    out += ctx.text("completeness_intro", **rule_values(ctx.data.manifest, ctx.tol_text()))
    if not errs:
        out.append(ctx.P("No completeness figures are available.", ctx.s.body))
        return out
    bins = relative_error_bins(errs, ctx.tol, flags=[
        r.get("flagged") is True for r in ctx.data.ok
        if isinstance(r.get("relative_error"), (int, float))])
    out.append(
        completeness_chart(bins, ctx.tol, ctx.fonts, width=min(ctx.fw, 440), height=150)
    )
    errs_sorted = sorted(errs)
    median = (
        errs_sorted[len(errs_sorted) // 2]
        if len(errs_sorted) % 2
        else 0.5 * (errs_sorted[len(errs_sorted) // 2 - 1] + errs_sorted[len(errs_sorted) // 2])
    )
    steps = [
        int(n) for r in ctx.data.ok if isinstance(n := r.get("n_steps"), (int, float))
    ]
    line = (
        f"Median relative error {format_percent(median)}, largest {format_percent(max(errs))}"
    )
    if steps:
        line += f"; integration steps per image: {min(steps)} to {max(steps)}"
    out.append(ctx.P(line + ".", ctx.s.small))
    if ctx.tol is not None and atol_of(ctx.data.manifest) is not None:
        tol = ctx.tol
        within = sum(1 for r in ctx.data.ok if r.get("flagged") is False
                     and isinstance(rel := r.get("relative_error"), (int, float))
                     and rel > tol)
        if within:
            out += ctx.text("completeness_absolute", n=within,
                            **rule_values(ctx.data.manifest, ctx.tol_text()))
    return out


def flagged(ctx: ReportContext) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(80), ctx.heading("flagged")]
    flagged = sorted(ctx.data.flagged, key=lambda r: -(r.get("relative_error") or 0.0))
    if not flagged:
        return out + ctx.text("no_flagged")
    data: list[list[Any]] = [
        [
            ctx.P(h, ctx.s.cell_bold)
            for h in ("Image", "Not met", "Relative error", "Map error", "Steps", "Prediction")
        ]
    ]
    for r in flagged:
        data.append(
            [
                ctx.P(r["path"], ctx.s.cell),
                ctx.P(r.get("flag_reason") or "completeness", ctx.s.cell),
                ctx.P(format_percent(r.get("relative_error")), ctx.s.cell),
                ctx.P(format_percent(map_error_of(r), 1), ctx.s.cell),
                ctx.P(r.get("n_steps", "n/a"), ctx.s.cell),
                ctx.P(prediction_text(r), ctx.s.cell),
            ]
        )
    out.append(table(data, [0.3 * ctx.fw, 0.14 * ctx.fw, 0.12 * ctx.fw, 0.1 * ctx.fw,
                            0.08 * ctx.fw, 0.26 * ctx.fw]))
    return out


def errors(ctx: ReportContext) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(80), ctx.heading("errors")]
    errs = ctx.data.errors
    if not errs:
        return out + ctx.text("no_errors")
    data: list[list[Any]] = [[ctx.P(h, ctx.s.cell_bold) for h in ("Image", "Reason")]]
    for r in errs:
        data.append(
            [
                ctx.P(r["path"], ctx.s.cell),
                ctx.P(r.get("error") or "unknown error", ctx.s.cell),
            ]
        )
    out.append(table(data, [0.45 * ctx.fw, 0.55 * ctx.fw]))
    return out


def localisation(ctx: ReportContext) -> list[Flowable]:
    if not ctx.data.has_localisation:
        return []
    ok = ctx.data.ok
    out: list[Flowable] = [CondPageBreak(120), ctx.heading("localisation")]
    out += ctx.text("localisation_intro")
    hits = [hit for r in ok if isinstance(hit := r.get("pointing_hit"), bool)]
    pairs = [
        (mass_share, area_share)
        for r in ok
        if isinstance(mass_share := r.get("mask_mass_fraction"), (int, float))
        and isinstance(area_share := r.get("mask_area_fraction"), (int, float))
    ]
    rows: list[list[Any]] = []
    if hits:
        rows.append(
            [
                ctx.P("Pointing game", ctx.s.cell_bold),
                ctx.P(
                    f"{sum(hits)} of {len(hits)} images hit a lesion ({format_percent(sum(hits) / len(hits), 1)})",
                    ctx.s.cell,
                ),
            ]
        )
    if pairs:
        mass = sum(p[0] for p in pairs) / len(pairs)
        area = sum(p[1] for p in pairs) / len(pairs)
        above = sum(1 for p in pairs if p[0] > p[1])
        rows.append(
            [
                ctx.P("Evidence on lesions", ctx.s.cell_bold),
                ctx.P(
                    f"mean {format_percent(mass, 1)} of positive attribution inside lesions that cover "
                    f"on average {format_percent(area, 1)} of the retina; mass share above area share in "
                    f"{above} of {len(pairs)} images",
                    ctx.s.cell,
                ),
            ]
        )
    if rows:
        out.append(table(rows, [0.3 * ctx.fw, 0.7 * ctx.fw], header=False))
    return out


def method(ctx: ReportContext) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(200), ctx.heading("method")]
    cohort = isinstance(ctx.data.manifest.get("cohort_clip"), (int, float))
    method = (
        ctx.t["text"]["method"].rstrip()
        + " "
        + ctx.t["text"]["scale_cohort" if cohort else "scale_per_image"]
    )
    if atol_of(ctx.data.manifest) is not None and ctx.tol is not None:
        method += " " + fill(ctx.t["text"]["completeness_rule"].strip(),
                             rule_values(ctx.data.manifest, ctx.tol_text()))
    if map_tol_of(ctx.data.manifest) is not None and "map_rule" in ctx.t["text"]:
        worst = max((e for r in ctx.data.ok if r.get("flagged") is False
                     if (e := map_error_of(r)) is not None), default=None)
        values = dict(rule_values(ctx.data.manifest, ctx.tol_text()),
                      accuracy=accuracy_phrase(worst) or "not estimated")
        method += " " + fill(ctx.t["text"]["map_rule"].strip(), values)
    out += paragraphs(method, ctx.s.body, ctx.fonts)
    strip = legend_strip(width=300, height=20)
    w = min(0.45 * ctx.fw, 220)
    bar = Image(io.BytesIO(png_bytes(strip)), width=w, height=w * 20 / 300)
    centre = ParagraphStyle("c", parent=ctx.s.small, alignment=1)
    right = ParagraphStyle("r", parent=ctx.s.small, alignment=2)
    scale = Table(
        [
            [
                ctx.P("strong against", ctx.s.small),
                ctx.P("none", centre),
                ctx.P("strong for", right),
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
    tx = ctx.t["text"]
    legend = [
        ctx.P(tx["legend_positive"], ctx.s.small),
        Spacer(1, 2),
        ctx.P(tx["legend_negative"], ctx.s.small),
        Spacer(1, 2),
        ctx.P(tx["legend_neutral"], ctx.s.small),
    ]
    box = Table([[scale_cells, legend]], colWidths=[w + 10, ctx.fw - w - 10], hAlign="LEFT")
    box.setStyle(
        TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])
    )
    out += [Spacer(1, 4), box]
    return out

# per image ------------------------------------------------------------------------------------


def provenance(ctx: ReportContext) -> list[Flowable]:
    m = ctx.data.manifest
    out: list[Flowable] = [CondPageBreak(150), ctx.heading("provenance")]
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
        [ctx.P(k, ctx.s.cell_bold), ctx.P(v, ctx.s.cell)]
        for k, v in items
        if v not in (None, "")
    ]
    out.append(table(rows, [0.32 * ctx.fw, 0.68 * ctx.fw], header=False))
    return out
