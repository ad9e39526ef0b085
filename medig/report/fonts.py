# SPDX-License-Identifier: Apache-2.0
"""Fonts for the PDF report, and escaping of untrusted text into reportlab paragraph markup.

File names in an audit can hold any Unicode (``Ångström ü 眼底.png``). reportlab's built-in fonts only
cover Latin-1, so a TrueType font is embedded when one can be found (DejaVu Sans, from the system or from
matplotlib's copy). Characters the body font lacks go to a fallback: an embedded CJK TrueType font if the
system has one, else Adobe's non-embedded ``STSong-Light`` CID font for CJK (text stays searchable and
copyable; viewers without the Adobe Asian font pack substitute a glyph). Anything still uncovered is
transliterated (``NFKD``, accents dropped) or replaced by ``?`` so that the report never crashes.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib.fonts import addMapping
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont

__all__ = ["FontSet", "get_fonts", "markup"]

_DEJAVU = {
    "regular": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "italic": "DejaVuSans-Oblique.ttf",
    "bolditalic": "DejaVuSans-BoldOblique.ttf",
}
# TrueType (not CFF/OpenType) CJK fonts reportlab can embed; Noto CJK is CFF-based, so it is not listed.
_CJK_TTF = [
    ("truetype/wqy/wqy-microhei.ttc", 0),
    ("truetype/wqy/wqy-zenhei.ttc", 0),
    ("truetype/droid/DroidSansFallbackFull.ttf", 0),
    ("truetype/arphic/uming.ttc", 0),
]
_FONT_ROOTS = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts"]


def _dejavu_dirs() -> list[Path]:
    dirs = [root / "truetype" / "dejavu" for root in _FONT_ROOTS] + [
        root / "dejavu" for root in _FONT_ROOTS
    ]
    spec = importlib.util.find_spec(
        "matplotlib"
    )  # locate without importing (matplotlib is slow to import)
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "mpl-data" / "fonts" / "ttf" for p in spec.submodule_search_locations]
    return dirs


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF  # radicals, kana, CJK unified ideographs
        or 0xAC00 <= o <= 0xD7AF  # Hangul syllables
        or 0xF900 <= o <= 0xFAFF
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
        or 0x20000 <= o <= 0x2FA1F
    )


@dataclass(frozen=True)
class FontSet:
    """Font names registered with reportlab for the report.

    Attributes
    ----------
    regular, bold, italic : str
        Body fonts (a registered family, so ``<b>`` and ``<i>`` work in paragraphs).
    fallback : str or None
        Font used for characters the body font lacks (CJK), or ``None``.
    embedded : bool
        Whether the body font is an embedded TrueType font (full Unicode coverage of its glyphs).
    """

    regular: str
    bold: str
    italic: str
    fallback: str | None
    embedded: bool
    _covered: frozenset[int] = field(default=frozenset(), repr=False)
    _fallback_covered: frozenset[int] | None = field(default=None, repr=False)

    def covers(self, ch: str) -> bool:
        """Whether the body font has a glyph for ``ch``."""
        if self.embedded:
            return ord(ch) in self._covered
        try:
            ch.encode("cp1252")  # reportlab's standard fonts use WinAnsiEncoding
        except UnicodeEncodeError:
            return False
        return True

    def fallback_covers(self, ch: str) -> bool:
        """Whether the fallback font can show ``ch``."""
        if self.fallback is None:
            return False
        if self._fallback_covered is None:  # CID font: trust it for CJK ranges
            return _is_cjk(ch)
        return ord(ch) in self._fallback_covered


@lru_cache(maxsize=1)
def get_fonts() -> FontSet:
    """Register the report fonts once and return their names (see the module docstring)."""
    fallback: str | None = None
    fallback_cov: frozenset[int] | None = None
    for rel, index in _CJK_TTF:
        for root in _FONT_ROOTS:
            path = root / rel
            if path.is_file():
                try:
                    font = TTFont("MedigCJK", str(path), subfontIndex=index)
                except Exception:  # noqa: BLE001, S112 - an unreadable system font: try the next one
                    continue
                pdfmetrics.registerFont(font)
                fallback, fallback_cov = "MedigCJK", frozenset(font.face.charToGlyph)
                break
        if fallback:
            break
    if fallback is None:
        try:
            pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
            fallback = "STSong-Light"
        except Exception:  # noqa: BLE001 - reportlab builds without CID maps: no CJK fallback
            fallback = None

    for directory in _dejavu_dirs():
        paths = {style: directory / name for style, name in _DEJAVU.items()}
        if not paths["regular"].is_file():
            continue
        names = {}
        for style, path in paths.items():
            # A missing bold/italic file falls back to the regular face rather than to Helvetica.
            names[style] = f"MedigSans-{style}"
            pdfmetrics.registerFont(
                TTFont(names[style], str(path if path.is_file() else paths["regular"]))
            )
        for bold, italic, style in [
            (0, 0, "regular"),
            (1, 0, "bold"),
            (0, 1, "italic"),
            (1, 1, "bolditalic"),
        ]:
            addMapping("MedigSans-regular", bold, italic, names[style])
        covered = frozenset(pdfmetrics.getFont(names["regular"]).face.charToGlyph)
        return FontSet(
            names["regular"], names["bold"], names["italic"], fallback, True, covered, fallback_cov
        )
    return FontSet(
        "Helvetica",
        "Helvetica-Bold",
        "Helvetica-Oblique",
        fallback,
        False,
        frozenset(),
        fallback_cov,
    )


def _transliterate(ch: str, fonts: FontSet) -> str:
    decomposed = "".join(
        c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
    )
    if decomposed and all(fonts.covers(c) for c in decomposed):
        return decomposed
    return "?"


def markup(text: object, fonts: FontSet | None = None) -> str:
    """Escape arbitrary text for a reportlab ``Paragraph``, switching fonts for uncovered characters.

    Parameters
    ----------
    text : object
        Converted with ``str``; ``None`` becomes an empty string. ``&``, ``<`` and ``>`` are escaped, so
        no markup from results (file names, error messages) can reach reportlab's parser.
    fonts : FontSet, optional
        Defaults to :func:`get_fonts`.

    Returns
    -------
    str
        Paragraph markup showing the same characters (or a transliteration where no font has them).
    """
    if text is None:
        return ""
    fonts = fonts or get_fonts()
    s = str(text)
    # Control characters (a stray \x00 or ESC in an error message) are invalid in PDF text and XML.
    s = "".join(" " if (unicodedata.category(c) == "Cc" and c not in "\n\t") else c for c in s)
    out: list[str] = []
    run: list[str] = []  # consecutive fallback characters share one <font> tag

    def flush() -> None:
        if run:
            out.append(f'<font name="{fonts.fallback}">{escape("".join(run))}</font>')
            run.clear()

    for ch in s:
        if ch == "\n":
            flush()
            out.append("<br/>")
        elif fonts.covers(ch) or ch in " \t":
            flush()
            out.append(escape(ch))
        elif fonts.fallback_covers(ch):
            run.append(ch)
        else:
            flush()
            out.append(escape(_transliterate(ch, fonts)))
    flush()
    return "".join(out)
