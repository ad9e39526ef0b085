# SPDX-License-Identifier: Apache-2.0
"""The audit's work store: finished work, one atomic file per input, so audits resume.

Layout under ``<out>/.medig/``::

    records/<key>.json   numbers of every frame of one input file (or its read error)
    arrays/<key>-<frame>.npz   the preprocessed image, FOV mask and attribution map of one frame

``key`` hashes the file's SHA-256 with the audit's numeric settings key, so finished work is found
again whatever the file's path, the batch size or the number of processes, and never reused under
other settings. Every file is written atomically (temporary file, then rename): a ``kill -9`` leaves
either no record or a complete one, and at most the batch in flight is recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from medig.utils import atomic_write

__all__ = [
    "WorkStore",
    "output_name",
    "parse_row_path",
    "printable",
    "record_key",
    "row_path",
    "unreadable_key",
]

# Control characters, shell-special ones, and the line breaks of str.splitlines beyond ASCII
# (NEL, LINE and PARAGRAPH SEPARATOR): a name must stay one line wherever it is printed.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f\x85\u2028\u2029<>:"|?*\\]')
_LEADING = re.compile(r"^[\s.]+")
#: Longest name component kept as it is, in bytes (UTF-8); longer ones are shortened to
#: _SHORT_BYTES plus a hash. 120 leaves room for "_frame<k>", ".png" and the temporary-file
#: decoration within the 143 bytes of the tightest common file system (eCryptfs), and NAME_MAX.
_KEEP_BYTES = 120
_SHORT_BYTES = 100
_HASH_CHARS = 8
_HASH_SUFFIX = re.compile(r"~[0-9a-f]{%d}$" % _HASH_CHARS)
_FRAME_SUFFIX = re.compile(r"_frame[0-9]+$")
_OUTPUT_EXTENSIONS = (".png", ".npz")


def record_key(file_sha256: str, settings_key: str) -> str:
    """Key of an input's finished work: its bytes and the settings that produced the numbers."""
    return hashlib.sha256(f"{file_sha256}:{settings_key}".encode()).hexdigest()[:32]


def unreadable_key(rel: str) -> str:
    """Stand-in for the SHA-256 of an input whose bytes could not be read (missing, a FIFO, a
    broken link, ...): unique per input path, so two unreadable inputs never share a record."""
    digest = hashlib.sha256(os.fsencode(rel)).hexdigest()[:32]
    return f"unreadable-{digest}"


def _cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def _sanitise(part: str) -> str:
    """A name component with nothing a file system or shell may object to (may be empty)."""
    part = unicodedata.normalize("NFC", part)
    part = "".join("_" if 0xD800 <= ord(c) <= 0xDFFF else c for c in part)  # undecodable bytes
    # no leading dot, even behind spaces (". .jpg" must not become the hidden ".jpg")
    return _LEADING.sub("", _UNSAFE.sub("_", part)).rstrip()


def _component(part: str, last: bool) -> str:
    """One component of an output name: kept as it is when safe, else sanitised, shortened to
    at most ``_SHORT_BYTES`` bytes and given ``~`` + 8 hex digits of the original's SHA-256.

    A kept name never ends like a hashed one (``~<8 hex>``) or like a frame (``_frame<k>``), and
    no folder is named like an output file (``.png``, ``.npz``): such names are hashed too, so two
    different inputs can never end up with one output name.
    """
    safe = _sanitise(part)
    raw = os.fsencode(part)
    if (
        safe == part
        and len(raw) <= _KEEP_BYTES
        and not _HASH_SUFFIX.search(part)
        and not (last and _FRAME_SUFFIX.search(part))
        and not (not last and part.lower().endswith(_OUTPUT_EXTENSIONS))
    ):
        return part
    digest = hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    return f"{_cut_utf8(safe, _SHORT_BYTES) or 'unnamed'}~{digest}"


def output_name(rel: str, frame: int | None = None) -> str:
    """The relative name (without extension) of the outputs of input ``rel`` (frame ``frame``).

    Each component of ``rel`` that is already safe is kept as it is — letters of any script
    included, so clinicians recognise their files. A component holding a control or shell-special
    character (``<>:"|?*`` or a backslash), an undecodable byte, a leading dot or surrounding
    spaces, or one not in Unicode NFC, or longer than 120 bytes, is sanitised, shortened to 100
    bytes and suffixed with ``~`` and 8 hex digits of the SHA-256 of its original bytes; ``..``
    and ``.`` cannot survive, so no name escapes its folder.

    ``overlays/<name>.png`` and ``attributions/<name>.npz``. Uniqueness is decided per name, not
    per audit, so every rank of a torchrun job and every resumed run names an input's outputs
    identically without knowing the other inputs: a name that is already safe is kept, and every
    name that sanitising or shortening changed gets a hash of its original bytes (``a<b.jpg`` ->
    ``a_b.jpg~<8 hex>``, while ``a_b.jpg`` stays ``a_b.jpg``; NFC and NFD spellings differ in
    the hash). Frames of a multi-frame file are ``<name>_frame<k>``; a real file whose name ends
    in ``_frame<k>`` is hashed. Components stay within 130 bytes, far below NAME_MAX.
    """
    parts = [p for p in rel.split("/") if p not in ("", ".")] or ["unnamed"]
    out = [_component(p, last=(i == len(parts) - 1)) for i, p in enumerate(parts)]
    if frame is not None:
        out[-1] += f"_frame{int(frame)}"
    return "/".join(out)


_LINE_BREAKS = "\x85\u2028\u2029"


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as os.fsdecode keeps it
        return f"%{code - 0xDC00:02X}"
    if 0xD800 <= code <= 0xDFFF:  # any other lone surrogate (never from the file system)
        return f"%u{code:04X}"
    if ch in "%#" or code < 0x20 or code == 0x7F:
        return f"%{code:02X}"
    if ch in _LINE_BREAKS:  # a line break to str.splitlines, though not ASCII
        return f"%u{code:04X}"
    return ch


def row_path(rel: str, frame: int | None = None) -> str:
    """How results, logs and the report name an input (and a frame): valid UTF-8, one line.

    The input's relative path with ``%``, ``#``, control characters and bytes that are not UTF-8
    percent-escaped (``%25``, ``%23``, ``%0A``, ``%FF``); then ``#<k>`` for frame ``k`` of a
    multi-frame DICOM. A file really named ``eye.dcm#1`` is ``eye.dcm%231``, frame 1 of
    ``eye.dcm`` is ``eye.dcm#1``. :func:`parse_row_path` inverts it.
    """
    text = "".join(_escape_char(c) for c in rel)
    return text if frame is None else f"{text}#{int(frame)}"


_ESCAPE = re.compile(r"%(u[0-9A-F]{4}|[0-9A-F]{2})")


def parse_row_path(text: str) -> tuple[str, int | None]:
    """``(relative path, frame)`` of a row path written by :func:`row_path`.

    The path is a ``str`` as :func:`os.fsdecode` gives it (undecodable bytes as surrogate escapes),
    ready for ``open()`` relative to the audited folder.
    """
    frame: int | None = None
    if "#" in text:
        text, _, index = text.rpartition("#")
        frame = int(index)

    def unescape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        value = int(code, 16)
        return chr(0xDC00 + value) if value >= 0x80 else chr(value)

    return _ESCAPE.sub(unescape, text), frame


def printable(text: str) -> str:
    """Free text (an error message) that can be written as UTF-8: bytes that are not UTF-8, kept by
    :func:`os.fsdecode` as surrogate escapes, become the four characters ``\xff``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class WorkStore:
    """Finished per-input work of an audit, under ``<out>/.medig``."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir) / ".medig"
        self.records = self.root / "records"
        self.arrays = self.root / "arrays"

    def record_path(self, key: str) -> Path:
        return self.records / f"{key}.json"

    def array_path(self, key: str, frame: int) -> Path:
        return self.arrays / f"{key}-{frame}.npz"

    def is_done(self, key: str) -> bool:
        """Whether the input's work is final (a record that does not ask to be retried)."""
        if not self.record_path(key).is_file():
            return False
        record = self.load(key)
        return record is not None and not record.get("retry", False)

    def load(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None if absent or unreadable."""
        try:
            return json.loads(self.record_path(key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def save(self, key: str, record: dict[str, Any]) -> None:
        """Store an input's record (write arrays first: a record promises its arrays exist)."""
        # ASCII JSON: an error text quoting a non-UTF-8 name (a surrogate escape) stays writable.
        atomic_write(self.record_path(key), json.dumps(record))

    def save_arrays(self, key: str, frame: int, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        members: dict[str, Any] = arrays  # numpy's stub would let **kwds fill allow_pickle
        np.savez_compressed(buffer, **members)
        atomic_write(self.array_path(key, frame), buffer.getvalue())

    def load_arrays(self, key: str, frame: int, *names: str) -> dict[str, np.ndarray]:
        with np.load(self.array_path(key, frame)) as data:
            return {n: data[n] for n in (names or data.files)}

    def prune(self, keep: set[str]) -> int:
        """Delete records and arrays whose key is not in ``keep`` (after settings changed)."""
        removed = 0
        for folder in (self.records, self.arrays):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.split("-")[0].split(".")[0] not in keep:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
