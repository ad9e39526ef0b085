# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from medig.report.fonts import FontSet, get_fonts, markup


def test_markup_escapes_and_keeps_unicode_with_embedded_font() -> None:
    fonts = get_fonts()
    m = markup("R&D <b>x</b> Ångström ü 眼底.png", fonts)
    assert "<b>" not in m and "&lt;b&gt;" in m and "&amp;D" in m
    if fonts.embedded:  # DejaVu found (system or matplotlib): Latin text stays as is
        assert "Ångström ü" in m
    if fonts.fallback:
        assert f'<font name="{fonts.fallback}">眼底</font>' in m
    assert markup(None) == "" and "\x00" not in markup("a\x00b")


def test_markup_transliterates_when_only_base14_fonts_exist() -> None:
    base14 = FontSet("Helvetica", "Helvetica-Bold", "Helvetica-Oblique", None, False)
    assert markup("Ångström ü", base14) == "Ångström ü"  # cp1252 covers these
    assert markup("Łódź 眼", base14) == "?ódz ?"
