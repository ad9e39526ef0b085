# SPDX-License-Identifier: Apache-2.0
"""The picture of a Secondary Capture overlay: the audit's overlay PNG with a caption burned in.

A Secondary Capture is seen in the PACS viewer on its own, away from the report, so it must say
what it is: the caption under the picture names it as medig's attribution overlay, says it is not
for diagnosis, explains the colours and gives the prediction. Small overlays are enlarged by an
integer factor (nearest neighbour, pixels unchanged) so that the caption is legible.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MIN_WIDTH", "captioned"]

#: Overlays narrower than this are enlarged by an integer factor before the caption is drawn.
MIN_WIDTH = 768


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str,
          font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def captioned(picture: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``picture`` ``(H, W, 3)`` uint8 with ``lines`` of text burned in on a black band below.

    Returns an ``(H', W', 3)`` uint8 array; the first line is drawn in bold yellow, the others in
    white, wrapped to the width.
    """
    factor = max(1, math.ceil(MIN_WIDTH / picture.shape[1]))
    if factor > 1:
        picture = np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)
    w = picture.shape[1]
    size = max(14, round(w / 60))
    font = _font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = size // 2
    wrapped = [(i, part) for i, text in enumerate(lines)
               for part in _wrap(measure, text, font, w - 2 * margin)]
    line_h = round(size * 1.3)
    band = Image.new("RGB", (w, 2 * margin + line_h * len(wrapped)), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    for k, (i, part) in enumerate(wrapped):
        colour = (255, 220, 0) if i == 0 else (255, 255, 255)
        draw.text((margin, margin + k * line_h), part, font=font, fill=colour)
    return np.concatenate([picture, np.asarray(band, dtype=np.uint8)], axis=0)
