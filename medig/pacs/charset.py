# SPDX-License-Identifier: Apache-2.0
"""The character set of the DICOM objects medig derives from a source image.

The derived objects copy the source's patient and study text (names, IDs, descriptions), which
must reach the archive as the source holds it: a patient's name in Japanese, Latin-1 or UTF-8
comes back from the written object exactly as pydicom decoded it from the source.

* :func:`derived_charset`: the source's ``SpecificCharacterSet`` in the form the standard (and
  highdicom, dciodvfy) accepts for a new object: one set with code extensions becomes its
  stand-alone form (``ISO 2022 IR 100`` is ``ISO_IR 100``), the default repertoire is no value, a
  multi-byte set alone gets its empty first value (``\\ISO 2022 IR 87``), pydicom's spelling
  corrections (``ISO-IR 100``) are applied. A set pydicom does not know (``ISO_IR 999``), or text
  that did not decode in its set, cannot be copied with certainty: plain ASCII text needs no set
  and is copied; anything else raises :class:`UncopyableText` and the source gets no object,
  rather than a guessed patient name filed in the archive.
* :func:`settle_charset`: sets the value on the object and checks that every text of it, the
  copied and medig's own (a model path may be non-ASCII), survives encoding; when some does not,
  the object is written in UTF-8 (``ISO_IR 192``), which encodes any text.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterable

import pydicom
from pydicom.charset import STAND_ALONE_ENCODINGS, python_encoding
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medig.io._quiet import quiet

__all__ = ["UTF8", "Charset", "UncopyableText", "derived_charset", "settle_charset"]

#: A ``SpecificCharacterSet`` value: absent (default repertoire), one term, or several.
Charset = str | list[str] | None

UTF8 = "ISO_IR 192"
_DEFAULT = {"", "ISO_IR 6", "ISO 2022 IR 6"}
#: Value representations holding text encoded in the object's character set.
_TEXT_VRS = {"PN", "SH", "LO", "ST", "LT", "UT", "UC"}
#: What a cleanly decoded PN/LO/SH never holds: pydicom's replacement character for undecodable
#: bytes, and control characters (an escape sequence pydicom could not interpret stays as text).
_UNDECODED = re.compile("[\ufffd\x00-\x08\x0b\x0e-\x1f\x7f]")
_TERM = re.compile(r"^[A-Z0-9 _-]{1,16}$")


class UncopyableText(ValueError):
    """A source whose patient and study text cannot be copied with certainty (the message names
    the character set, never a value)."""


def _terms(value: object) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, (str, bytes)) else list(value)  # type: ignore[call-overload]
    return [str(v).strip() for v in values]


def _known(term: str) -> str | None:
    """The defined term ``term`` is, with pydicom's own spelling corrections; None if unknown."""
    if term in python_encoding:
        return term
    if re.match(r"^ISO[^_]IR", term):
        patched = "ISO_IR" + term[6:]
    elif re.match(r"^(?=ISO.2022.IR.)(?!ISO 2022 IR )", term):
        patched = "ISO 2022 IR " + term[12:]
    else:
        return None
    return patched if patched in python_encoding else None


def _shown(term: str) -> str:
    return repr(term) if _TERM.match(term) else "an invalid value"


def _normalised(terms: list[str]) -> Charset:
    """Known terms in the form a new object may carry (PS3.3 C.12.1.1.2)."""
    if terms[0] in STAND_ALONE_ENCODINGS:  # pydicom ignores anything after a stand-alone set
        return terms[0]
    rest = [t for t in terms[1:] if t and t not in STAND_ALONE_ENCODINGS and t not in _DEFAULT]
    first = terms[0]
    if not rest:
        if first in _DEFAULT:
            return None
        if first.startswith("ISO 2022 IR "):
            alone = "ISO_IR " + first[len("ISO 2022 IR "):]
            # one set with code extensions is that set; a multi-byte set is never value 1
            return alone if alone in python_encoding else ["", first]
        return first
    extended = []
    for term in [first, *rest]:
        if term.startswith("ISO_IR ") and term not in _DEFAULT:
            term = "ISO 2022 IR " + term[len("ISO_IR "):]
        term = "" if term in _DEFAULT else term
        if term not in extended:
            extended.append(term)
    return extended


def derived_charset(source: Dataset, names: Iterable[str]) -> Charset:
    """The ``SpecificCharacterSet`` of an object that copies the attributes ``names`` of
    ``source`` (see the module docstring).

    Raises
    ------
    UncopyableText
        The copied text did not decode cleanly, or it is not plain ASCII and its character set is
        one pydicom does not know.
    """
    with quiet():
        value = source.get("SpecificCharacterSet")
        texts = [str(source[n].value) for n in names
                 if n in source and source[n].VR in _TEXT_VRS and not source[n].is_empty]
    terms = _terms(value) or [""]
    if any(_UNDECODED.search(t) for t in texts):
        shown = "\\".join(_shown(t) if t else "''" for t in terms)
        raise UncopyableText(f"its patient or study text does not decode in its character set "
                             f"({shown})")
    known = [_known(t) for t in terms]
    unknown = [t for t, k in zip(terms, known) if k is None]
    if not unknown:
        return _normalised([k for k in known if k is not None])
    if all(t.isascii() for t in texts):
        return None  # plain ASCII: the default repertoire holds it exactly, whatever the label
    raise UncopyableText(f"its character set {_shown(unknown[0])} is not a DICOM character set "
                         "and its patient or study text is not plain ASCII")


def _header(ds: Dataset) -> bytes:
    """``ds`` serialised without its bulk data (pixels, document)."""
    probe = Dataset()
    for element in ds:
        if element.keyword not in ("PixelData", "EncapsulatedDocument"):
            probe.add(element)
    probe.file_meta = ds.file_meta
    buffer = io.BytesIO()
    probe.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _texts(ds: Dataset) -> list[tuple[int, str]]:
    return [(int(e.tag), str(e.value)) for e in ds.iterall()
            if e.VR in _TEXT_VRS and not e.is_empty]


def _survives(ds: Dataset) -> bool:
    with quiet():
        back = pydicom.dcmread(io.BytesIO(_header(ds)))
        return _texts(back) == _texts(ds)


def _fresh_names(ds: Dataset) -> None:
    """Person names as text only: pydicom writes a name in the bytes it last had (the source's,
    or those of an earlier try), whatever the set of the object it is written in."""
    for element in ds:
        if element.VR == "PN" and not element.is_empty:
            value = element.value
            element.value = ([str(v) for v in value] if isinstance(value, MultiValue)
                             else str(value))


def settle_charset(ds: Dataset, charset: Charset) -> Charset:
    """Give ``ds`` the character set ``charset``, or UTF-8 when some of its text would not come
    back from the written object; returns the one set.

    Raises
    ------
    UncopyableText
        Not even UTF-8 gives the text back (not expected: any text encodes in it).
    """
    for candidate in (charset, UTF8):
        _fresh_names(ds)
        if candidate is None:
            if "SpecificCharacterSet" in ds:
                del ds.SpecificCharacterSet
        else:
            ds.SpecificCharacterSet = candidate
        if _survives(ds):
            return candidate
    raise UncopyableText("its patient or study text cannot be encoded in a DICOM object")
