# SPDX-License-Identifier: Apache-2.0
"""Small bar charts as inline SVG text for the HTML report (no script, no external font).

Every label is escaped, so a class name such as ``<b>`` prints as itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "bar_chart"]

BLUE = "#4a7fb5"
ORANGE = "#d9822b"
RED = "#b22222"
GREY = "#9aa5b1"


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its count, and the part of the count drawn orange (flagged)."""

    label: str
    count: int
    flagged: int = 0
    colour: str = BLUE


def _t(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def bar_chart(bars: list[Bar], title: str, caption: str = "", marker: float | None = None,
              marker_label: str = "", width: int = 440, height: int = 190) -> str:
    """A vertical bar chart: counts above the bars, labels below, an optional dashed marker.

    Parameters
    ----------
    bars : list of Bar
        The bars, left to right; ``flagged`` of each count is stacked on top in orange.
    title, caption : str
        Text above and below the chart.
    marker : float, optional
        Position of a dashed vertical line, in bars from the left edge (``2`` = between the
        second and the third bar).
    marker_label : str
        Text beside the marker.

    Returns
    -------
    str
        An ``<svg>`` element with a ``<title>`` (its accessible name).
    """
    x0, top_pad, bottom = 34, 46, 40
    cw, ch = width - x0 - 8, height - top_pad - bottom
    base = top_pad + ch
    top = max([b.count for b in bars] + [1])
    bw = cw / max(len(bars), 1)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>",
           f'<text x="{x0}" y="14" class="ct">{escape(title)}</text>']
    for i, b in enumerate(bars):
        x = x0 + i * bw + 2
        h_all = ch * b.count / top
        h_flag = ch * min(b.flagged, b.count) / top
        if h_all - h_flag > 0:
            out.append(f'<rect x="{_t(x)}" y="{_t(base - h_all)}" width="{_t(bw - 4)}" '
                       f'height="{_t(h_all - h_flag)}" fill="{b.colour}"/>')
        if h_flag > 0:
            out.append(f'<rect x="{_t(x)}" y="{_t(base - h_flag)}" width="{_t(bw - 4)}" '
                       f'height="{_t(h_flag)}" fill="{ORANGE}"/>')
        cx = x0 + (i + 0.5) * bw
        out.append(f'<text x="{_t(cx)}" y="{_t(base - h_all - 3)}" class="cv">{b.count}</text>')
        label = b.label if len(b.label) <= 16 else b.label[:15] + "\u2026"
        out.append(f'<text x="{_t(cx)}" y="{base + 13}" class="cl">{escape(label)}</text>')
    out.append(f'<line x1="{x0}" y1="{base}" x2="{x0 + cw}" y2="{base}" stroke="#333" '
               'stroke-width="0.6"/>')
    if marker is not None:
        mx = x0 + marker * bw
        out.append(f'<line x1="{_t(mx)}" y1="{top_pad - 18}" x2="{_t(mx)}" y2="{base}" '
                   f'stroke="{RED}" stroke-width="1" stroke-dasharray="3 2"/>')
        if marker_label:
            anchor = "end" if marker > len(bars) * 0.6 else "start"
            dx = -3 if anchor == "end" else 3
            out.append(f'<text x="{_t(mx + dx)}" y="{top_pad - 21}" class="cm" '
                       f'text-anchor="{anchor}">{escape(marker_label)}</text>')
    if caption:
        out.append(f'<text x="{_t(x0 + cw / 2)}" y="{height - 6}" class="cc">'
                   f"{escape(caption)}</text>")
    out.append("</svg>")
    return "".join(out)
