# SPDX-License-Identifier: Apache-2.0
"""Small vector charts for the report (reportlab.graphics), and the overlay colour legend as a flowable."""

from __future__ import annotations

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, Line, String
from reportlab.lib import colors

from medig.report.data import ErrorBin
from medig.report.fonts import FontSet

__all__ = ["completeness_chart"]

_OK = colors.HexColor("#4a7fb5")
_BAD = colors.HexColor("#d9822b")


def completeness_chart(
    bins: list[ErrorBin],
    tolerance: float | None,
    fonts: FontSet,
    width: float = 400,
    height: float = 150,
) -> Drawing:
    """Bar chart of the number of images per relative-error bin, with the tolerance marked.

    Flagged images are orange, the others blue (with per-bin flag counts the bars stack the two;
    without, the bars above the tolerance are orange); a dashed line marks the relative tolerance
    between the bars. Labels use only ASCII and the body font, so the chart renders anywhere.

    Parameters
    ----------
    bins : list of ErrorBin
        From :func:`medig.report.data.relative_error_bins`.
    tolerance : float or None
        Completeness tolerance as a fraction; ``None``: no marker.
    fonts : FontSet
        Fonts for labels.
    width, height : float
        Size in points.

    Returns
    -------
    reportlab.graphics.shapes.Drawing
    """
    d = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y = 42, 30
    chart.width, chart.height = width - 60, height - 58
    counts = [b.count for b in bins]
    # With per-bin flag counts (an absolute tolerance can make an image above the relative tolerance
    # complete), bars stack the complete images (blue) under the flagged ones (orange).
    by_flag = all(b.flagged is not None for b in bins)
    chart.data = ([[b.count - (b.flagged or 0) for b in bins], [b.flagged for b in bins]] if by_flag
                  else [counts])
    top = max(counts + [1])
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = top * 1.2 if top > 4 else 5
    chart.valueAxis.valueStep = max(1, round(chart.valueAxis.valueMax / 5))
    chart.valueAxis.labels.fontName = fonts.regular
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d"
    chart.categoryAxis.categoryNames = [b.label for b in bins]
    chart.categoryAxis.labels.fontName = fonts.regular
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.dy = -2
    chart.barSpacing = 2
    chart.groupSpacing = 6
    chart.bars[0].strokeColor = None
    chart.bars[0].fillColor = _OK
    if by_flag:
        chart.categoryAxis.style = "stacked"
        chart.bars[1].strokeColor = None
        chart.bars[1].fillColor = _BAD
    else:
        for i, b in enumerate(bins):
            if tolerance is not None and b.lo >= tolerance - 1e-12:
                chart.bars[(0, i)].fillColor = _BAD
        chart.barLabelFormat = "%d"
        chart.barLabels.fontName = fonts.regular
        chart.barLabels.fontSize = 7
        chart.barLabels.nudge = 6
    d.add(chart)
    if by_flag:  # one count per bar, above the stack
        step = chart.width / len(bins)
        for i, b in enumerate(bins):
            if b.count:
                y = chart.y + chart.height * b.count / chart.valueAxis.valueMax + 3
                d.add(String(chart.x + step * (i + 0.5), y, str(b.count),
                             fontName=fonts.regular, fontSize=7, textAnchor="middle"))
    d.add(
        String(
            chart.x - 34, chart.y + chart.height + 10, "images", fontName=fonts.regular, fontSize=7
        )
    )
    d.add(
        String(
            chart.x + chart.width / 2,
            4,
            "relative completeness error |delta| / |F(x) - F(x')|",
            fontName=fonts.regular,
            fontSize=7,
            textAnchor="middle",
        )
    )
    if tolerance is not None:
        boundary = next((i + 1 for i, b in enumerate(bins) if abs(b.hi - tolerance) < 1e-12), None)
        if boundary is not None:
            x = chart.x + chart.width * boundary / len(bins)
            d.add(
                Line(
                    x,
                    chart.y,
                    x,
                    chart.y + chart.height + 6,
                    strokeColor=colors.HexColor("#b22222"),
                    strokeWidth=1,
                    strokeDashArray=[3, 2],
                )
            )
            d.add(
                String(
                    x + 3,
                    chart.y + chart.height + 8,
                    f"tolerance {tolerance * 100:g}%  "
                    + ("(orange: flagged)" if by_flag else "(flagged to the right)"),
                    fontName=fonts.regular,
                    fontSize=7,
                    fillColor=colors.HexColor("#b22222"),
                )
            )
    return d
