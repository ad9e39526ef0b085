# SPDX-License-Identifier: Apache-2.0
"""The "What does the model rely on?" block of the cover: the cohort's findings (``manifest.json``
``"findings"``) in plain words with an example image each, and the region chart (the share of
the evidence against the share of the area, per anatomical region)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reportlab.graphics.shapes import Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.platypus import CondPageBreak, Flowable, Spacer

from medig.report.images import overlay_path, overlay_pictures
from medig.report.layout import ReportContext, fill

__all__ = ["REGION_NAMES", "region_chart", "region_shares", "reliance"]

#: Plain names of the regions of the region chart, in its order.
REGION_NAMES = {"optic_disc": "optic disc", "macula": "macula", "vessels": "vessels",
                "retina": "rest of the retina", "fov_rim": "rim of the retina",
                "frame_corners": "frame corners", "outside_fov": "rest outside the retina"}
_EVIDENCE = colors.HexColor("#2e8b57")
_AREA = colors.HexColor("#b0b0b0")
_HOT = colors.HexColor("#d9822b")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def region_shares(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Mean (positive evidence share, area share) per region over the rows that have them."""
    sums: dict[str, list[float]] = {}
    for r in rows:
        ev = r.get("region_evidence")
        if not isinstance(ev, dict):
            continue
        for name, parts in ev.items():
            pos, area = _num(parts.get("pos")), _num(parts.get("area"))
            if pos is None or area is None:
                continue
            s = sums.setdefault(name, [0.0, 0.0, 0.0])
            s[0] += pos
            s[1] += area
            s[2] += 1
    return {n: (s[0] / s[2], s[1] / s[2]) for n, s in sums.items() if s[2]}


def region_chart(shares: dict[str, tuple[float, float]], font: str, width: float = 250,
                 height: float = 130) -> Drawing:
    """Horizontal bars per region: evidence share (green; orange where more than twice the area
    share) above area share (grey)."""
    names = [n for n in REGION_NAMES if n in shares]
    d = Drawing(width, height)
    label_w, x0, top = 92, 96, height - 16
    cw = width - x0 - 26
    row = (top - 12) / max(1, len(names))
    scale = max([max(e, a) for e, a in shares.values()] + [0.05])
    for i, name in enumerate(names):
        e, a = shares[name]
        y = top - (i + 1) * row
        d.add(String(label_w, y + row * 0.3, REGION_NAMES[name], fontName=font, fontSize=6.5,
                     textAnchor="end"))
        hot = e > 2 * a and e > 0.1
        d.add(Rect(x0, y + row * 0.5, cw * e / scale, row * 0.38,
                   fillColor=_HOT if hot else _EVIDENCE, strokeColor=None))
        d.add(Rect(x0, y + row * 0.1, cw * a / scale, row * 0.38, fillColor=_AREA,
                   strokeColor=None))
        d.add(String(x0 + cw * e / scale + 2, y + row * 0.52, f"{e:.0%}", fontName=font,
                     fontSize=5.5))
    d.add(Line(x0, 10, x0, top, strokeColor=colors.black, strokeWidth=0.5))
    d.add(String(0, height - 8, "Share of the evidence (green) and of the image (grey) per region",
                 fontName=font, fontSize=7))
    d.add(String(x0, 1, "orange: more than twice its share of the image", fontName=font,
                 fontSize=6))
    return d


def _place(where: list[float]) -> str:
    cx, cy = (where[0] + where[2]) / 2, (where[1] + where[3]) / 2
    v = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    h = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    return "centre" if (v, h) == ("middle", "centre") else f"{v} {h}".replace("middle ", "")


def reliance(ctx: ReportContext) -> list[Flowable]:
    """The block: findings (or the sentence that there are none) and the region chart."""
    findings = ctx.data.manifest.get("findings")
    rows = ctx.data.ok
    shares = region_shares(rows)
    if findings is None and not shares:
        return []  # an audit from before the region steps
    out: list[Flowable] = [CondPageBreak(220), ctx.heading("reliance")]
    t = ctx.t["text"]
    by_path = {r.get("path"): r for r in rows}
    good = [f for f in findings or [] if isinstance(f, dict) and f.get("kind")]
    if not good:
        out.append(ctx.P(fill(t["reliance_none"], {"n": len(rows)})))
    for f in good:
        key = "reliance_" + str(f["kind"]).replace("-", "_")
        where = f.get("where")
        values = {"images": f.get("images"), "n": len(rows),
                  "share": f"{_num(f.get('share')) or 0:.0%}",
                  "place": _place(where) if isinstance(where, list) and len(where) == 4 else ""}
        text = fill(t[key], values) if key in t else str(f.get("text") or "")
        out.append(ctx.P("\u2022 " + text))
        example = next((by_path[p] for p in f.get("examples") or [] if p in by_path), None)
        path = overlay_path(ctx, example) if example is not None else None
        if example is not None and path is not None:
            try:
                out.extend(overlay_pictures(ctx, path, 0.55 * ctx.fw, 110,
                                            f"Example: {example['path']}", "its overlay"))
            except (OSError, ValueError):
                pass
    if shares:
        out.append(Spacer(1, 4))
        out.append(region_chart(shares, ctx.fonts.regular, 0.6 * ctx.fw, 130))
        out.append(ctx.P(fill(t["reliance_chart"], {"n": len(rows)}), ctx.s.small))
    return out
