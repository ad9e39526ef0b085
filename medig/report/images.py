# SPDX-License-Identifier: Apache-2.0
"""The per-image part of the report: each image's original and overlay beside its figures."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path

from PIL import Image as PILImage
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from medig.report.fonts import markup
from medig.report.layout import FLAG_BG, ReportContext, format_number, format_percent, table
from medig.report.quality import quality_figures, quality_tag
from medig.report.rows import ResultRow
from medig.report.targets import overlay_caption, prediction_text, probability_table
from medig.report.tolerance import map_error_of, map_tol_of
from medig.report.trust import heading_flags, trust_figures

__all__ = ["FIGURES", "TABLES", "image_block", "image_figures", "images", "overlay_path"]

_LATERALITY = {"R": "right eye", "L": "left eye", "B": "both eyes", "U": "unknown"}
_SAMPLE_SEED = 0


def row_overlay(out_dir: Path, r: ResultRow) -> Path | None:
    """The overlay PNG a result row names, if it is a file inside the audit folder ``out_dir``
    (the row is data: "../" must never point a report or an export at files outside it)."""
    rel = r.get("overlay")
    if not rel:
        return None
    path = (out_dir / rel).resolve()
    return path if path.is_relative_to(out_dir.resolve()) and path.is_file() else None


def overlay_path(ctx: ReportContext, r: ResultRow) -> Path | None:
    return row_overlay(ctx.out_dir, r)


def overlay_pictures(ctx: ReportContext, path: Path, width: float, height: float,
                     left: str, right: str) -> list[Flowable]:
    """An overlay PNG (the photograph beside its overlay) scaled into ``width`` x ``height``,
    left-aligned, with a caption under each half. Raises ``OSError``/``ValueError`` if the PNG
    cannot be read."""
    with PILImage.open(path) as im:
        iw, ih = im.size
    scale = min(width / iw, height / ih)
    img = Image(str(path), width=iw * scale, height=ih * scale)
    img.hAlign = "LEFT"
    caption = Table([[ctx.P(left, ctx.s.small), ctx.P(right, ctx.s.small)]],
                    colWidths=[iw * scale / 2] * 2, hAlign="LEFT")
    caption.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0),
                                 ("TOPPADDING", (0, 0), (-1, -1), 1),
                                 ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [img, caption]


def prediction_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """What the model predicted and which class the colours refer to."""
    return [("Prediction", prediction_text(r)), ("Class explained", str(r.get("target", "n/a")))]


def completeness_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """F(x), F(x'), their change, the completeness gap and whether the tolerance was met."""
    f = [("Output F(x)", format_number(r.get("score"))),
         ("Baseline F(x\u2032)", format_number(r.get("baseline_score")))]
    score, base = r.get("score"), r.get("baseline_score")
    if isinstance(score, (int, float)) and isinstance(base, (int, float)):
        f.append(("Change F(x) \u2212 F(x\u2032)", format_number(score - base)))
    flagged = r.get("flagged")
    verdict = "NOT MET (flagged)" if flagged else ("met" if flagged is False else "unknown")
    if isinstance(r.get("abs_tol"), (int, float)):  # the rule's allowance for this image
        f.append(("Completeness gap", f"{format_number(r.get('delta'))} (allowed "
                  f"\u00b1{format_number(r['abs_tol'])}): {verdict}"))
        f.append(("Relative error", format_percent(r.get("relative_error"))))
    else:
        f.append(("Completeness gap", format_number(r.get("delta"))))
        f.append(("Relative error", f"{format_percent(r.get('relative_error'))}: {verdict}"))
    error = map_error_of(r)
    if error is not None:
        reason = r.get("flag_reason") or ""
        verdict = ("NOT MET (flagged)" if "map accuracy" in reason
                   else ("met" if r.get("flagged") is not None else "unknown"))
        allowed = map_tol_of(ctx.data.manifest)
        f.append(("Map error (estimated)", f"{format_percent(error, 1)}"
                  + (f" (allowed {format_percent(allowed, 0)}): {verdict}" if allowed else "")))
    f.append(("Integration steps", str(r.get("n_steps", "n/a"))))
    return f


def localisation_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """Pointing game and attribution mass on the lesion mask, when one was given."""
    f = []
    if isinstance(r.get("pointing_hit"), bool):
        f.append(("Pointing game",
                  "hit (strongest evidence on a lesion)" if r["pointing_hit"] else "miss"))
    mass, area = r.get("mask_mass_fraction"), r.get("mask_area_fraction")
    if isinstance(mass, (int, float)) and isinstance(area, (int, float)):
        ratio = f", {mass / area:.1f}\u00d7 the area share" if area > 0 else ""
        f.append(("Evidence on lesions", f"{format_percent(mass, 1)} of positive attribution on "
                                         f"{format_percent(area, 1)} of the retina{ratio}"))
    return f


def laterality_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """Which eye, when the file says."""
    lat = r.get("laterality")
    if not lat:
        return []
    words = _LATERALITY.get(str(lat).upper())
    return [("Laterality", f"{lat} ({words})" if words else str(lat))]


def metadata_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """The row's metadata (may identify the patient): printed only with ``include_phi``."""
    # Not a result field (medig does not write it): a key another writer of the rows may add.
    fields: Mapping[str, object] = r
    metadata = fields.get("metadata")
    if not (ctx.include_phi and isinstance(metadata, dict)):
        return []
    return [(str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
            for k, v in metadata.items()]


#: The groups of figures printed beside each explained image, in order.
FIGURES: list[Callable[[ReportContext, ResultRow], list[tuple[str, str]]]] = [
    prediction_figures,
    quality_figures,
    completeness_figures,
    trust_figures,
    localisation_figures,
    laterality_figures,
    metadata_figures,
]


#: Flowables printed under each image's figures, in order (class probabilities).
TABLES: list[Callable[[ReportContext, ResultRow], list[Flowable]]] = [
    probability_table,
]


def image_figures(ctx: ReportContext, r: ResultRow) -> list[tuple[str, str]]:
    """(label, value) pairs printed beside an image: every group of :data:`FIGURES`."""
    if r.get("status") == "skipped":  # not gradeable, left unexplained
        return [("Status", "skipped: not explained"), *quality_figures(ctx, r)]
    if r.get("status") != "ok":
        return [("Status", "could not be read"), ("Reason", r.get("error") or "unknown error")]
    return [pair for group in FIGURES for pair in group(ctx, r)]


def image_block(ctx: ReportContext, r: ResultRow, max_img_h: float) -> Flowable:
    flagged = r.get("flagged") is True
    title = r["path"]
    reason = r.get("flag_reason") or "completeness"
    not_met = ", ".join(([] if reason == "map accuracy" else ["incomplete attribution"])
                        + (["map accuracy not met"] if "map accuracy" in reason else []))
    tag = (
        f"  \u2014  FLAGGED: {not_met}"
        if flagged
        else ("  \u2014  NOT READ" if r.get("status") not in ("ok", "skipped") else "")
    ) + quality_tag(r)
    tag += heading_flags(r)
    parts: list[Flowable] = [
        Paragraph(f"<b>{markup(title, ctx.fonts)}</b>{markup(tag, ctx.fonts)}", ctx.s.h2)
    ]
    path = overlay_path(ctx, r)
    if path is not None:
        try:
            parts += overlay_pictures(ctx, path, ctx.fw, max_img_h, "Image as given to the model",
                                      overlay_caption(ctx, r))
        except (OSError, ValueError):
            parts.append(ctx.P("The overlay image could not be opened.", ctx.s.small))
    elif r.get("status") == "ok":
        parts.append(ctx.P("No overlay image was found for this image.", ctx.s.small))
    figs = image_figures(ctx, r)
    half = (len(figs) + 1) // 2
    left, right = figs[:half], figs[half:]
    rows = []
    for i in range(half):
        row = [ctx.P(left[i][0], ctx.s.cell_bold), ctx.P(left[i][1], ctx.s.cell)]
        row += (
            [ctx.P(right[i][0], ctx.s.cell_bold), ctx.P(right[i][1], ctx.s.cell)]
            if i < len(right)
            else ["", ""]
        )
        rows.append(row)
    extra = [("BACKGROUND", (0, 0), (-1, -1), FLAG_BG)] if flagged else []
    parts.append(Spacer(1, 3))
    parts.append(
        table(
            rows,
            [0.22 * ctx.fw, 0.28 * ctx.fw, 0.22 * ctx.fw, 0.28 * ctx.fw],
            header=False,
            extra=extra,
        )
    )
    for block in TABLES:
        parts += block(ctx, r)
    parts.append(Spacer(1, 10))
    return KeepTogether(parts)


def images(ctx: ReportContext) -> list[Flowable]:
    r = ctx.t["report"]
    rows = ctx.data.rows
    shown = rows
    out: list[Flowable] = [CondPageBreak(ctx.fh * 0.5), ctx.heading("images")]
    if len(rows) > r["max_images_full"]:
        # Skipped images are listed in the quality section: sampled like the rest.
        failed = [x.get("status") not in ("ok", "skipped") for x in rows]
        must = [x for x, f in zip(rows, failed) if f or x.get("flagged") is True]
        rest = [x for x, f in zip(rows, failed) if not (f or x.get("flagged") is True)]
        k = min(r["sample_size"], len(rest))
        picked = set(random.Random(_SAMPLE_SEED).sample(range(len(rest)), k))
        chosen = {id(x) for x in must} | {id(rest[i]) for i in picked}
        shown = [x for x in rows if id(x) in chosen]
        out += ctx.text(
            "sample_note",
            n_total=len(rows),
            n_shown=len(shown),
            n_flagged=len(ctx.data.flagged),
            n_errors=len(ctx.data.errors),
            n_sample=k,
            n_rest=len(rest),
        )
    # Room for the text under each image: two blocks must fit a page when images_per_page == 2.
    per_page = r["images_per_page"]
    text_h = 175
    max_img_h = max(80.0, (ctx.fh - 30) / per_page - text_h)
    out += [image_block(ctx, x, max_img_h) for x in shown]
    return out
