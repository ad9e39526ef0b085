# SPDX-License-Identifier: Apache-2.0
"""The audit's work store: finished work, one atomic file per input, so audits resume.

Layout under ``<out>/.medig/``::

    records/<key>.json   numbers of every frame of one input file (or its read error)
    arrays/<key>-<frame>.npz   the preprocessed image, FOV mask and attribution map of one frame
    settings.json   the numeric settings the stored work was computed with

``key`` hashes the file's SHA-256 with the audit's numeric settings key, so finished work is found
again whatever the file's path, the batch size or the number of processes, and never reused under
other settings. Every file is written atomically (temporary file, then rename): a ``kill -9`` leaves
either no record or a complete one, and at most the batch in flight is recomputed.

Nothing loaded back is believed unchecked: a record names the hash and settings key it was
computed for, and is ignored unless they give the key it was looked up under (a record copied or
swapped between keys is caught); an arrays file names its key and frame. Stored work that is
unreadable, of the wrong shape or someone else's is treated as absent (one warning line per file)
and computed again.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medig.audit.errors import AuditError
from medig.utils import atomic_write, open_regular, read_json_file

log = logging.getLogger("medig")

__all__ = [
    "DamagedWorkError",
    "WorkStore",
    "output_name",
    "parse_row_path",
    "printable",
    "record_key",
    "record_problem",
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
_HASH_SUFFIX = re.compile(rf"~[0-9a-f]{{{_HASH_CHARS}}}$")
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


class DamagedWorkError(AuditError):
    """Stored work of some inputs turned out unusable while the audit's outputs were assembled
    (an arrays file that cannot be read): those inputs must be computed again.

    Attributes
    ----------
    keys : set of str
        Record keys of the damaged work.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)
        super().__init__(f"the stored work of {len(self.keys)} input(s) is damaged; run the "
                         "audit again to recompute it")


_NUMBER = (int, float)
#: Fields a stored frame of status "ok" must have, with their types (None: may be null).
_OK_FRAME_FIELDS: dict[str, tuple[type, ...]] = {
    "predicted": (str,), "predicted_index": (int,), "probabilities": (dict,),
    "target": (str,), "target_index": (int, type(None)),
    "score": _NUMBER, "baseline_score": _NUMBER, "delta": (*_NUMBER, type(None)),
    "relative_error": (*_NUMBER, type(None)), "n_steps": (int,), "flagged": (bool,),
}
#: Statuses of a stored frame: explained, left out by a step (``--quality skip``), or failed.
_FRAME_STATUSES = ("ok", "skipped", "error")
#: Arrays of a frame: dtype kind and number of dimensions (see ``medig.audit.steps.arrays``).
_ARRAYS: dict[str, tuple[str, int]] = {
    "image": ("u", 3), "fov": ("b", 3), "attr_map": ("f", 3), "attr_scale": ("f", 0),
    "sketch": ("f", 1), "clip": ("f", 0),
    # only when the audit averaged several baselines: each one's own map, scale and name
    "baseline_maps": ("f", 3), "baseline_scales": ("f", 1), "baseline_names": ("U", 1),
}
_OWNER = "owner"  # the array naming the key and frame an arrays file belongs to
_WARN_AT_MOST = 20  # individual warnings per store; then one line says that more are not listed


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python, but never a number or an index here
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _digest(body: dict[str, Any]) -> str:
    # json.dumps gives back the same text for what json.loads read from it (floats round-trip).
    return hashlib.sha256(json.dumps(body).encode("ascii")).hexdigest()


def _frame_problem(frame: Any) -> str | None:
    if not isinstance(frame, dict):
        return "a frame is not an object"
    index = frame.get("frame", "missing")
    if index is not None and not (_is(index, (int,)) and index >= 0):
        return "a frame has no valid frame index"
    status = frame.get("status")
    if status not in _FRAME_STATUSES:
        return f"a frame has status {status!r}"
    if status == "ok":
        for name, types in _OK_FRAME_FIELDS.items():
            if not _is(frame.get(name), types):
                return f"a frame's {name!r} is missing or of the wrong type"
    return None


def record_problem(record: Any, key: str) -> str | None:
    """Why ``record`` is not valid stored work for ``key``, or None if it is.

    A record is an object with ``status`` ``"ok"`` (and at least one valid frame) or ``"error"``
    (with an ``error`` text); ``sha256`` (None when the bytes could not be read), and
    ``key_sha256`` and ``settings_key``, which :func:`record_key` must turn into ``key``; and the
    ``digest`` of everything else, so that a flipped digit is not believed either.
    """
    if not isinstance(record, dict):
        return "not a JSON object"
    keyed, settings_key = record.get("key_sha256"), record.get("settings_key")
    if not (isinstance(keyed, str) and isinstance(settings_key, str) and "digest" in record):
        return "no key and digest (made by an older medig, or edited)"
    body = {k: v for k, v in record.items() if k != "digest"}
    if record["digest"] != _digest(body):
        return "its content does not match its digest (damaged or edited)"
    if record_key(keyed, settings_key) != key:
        return "it was computed for another file or other settings"
    if record.get("sha256") not in (None, keyed):
        return "its sha256 is not the one it is keyed by"
    if not _is(record.get("retry", False), (bool,)):
        return "'retry' is not true or false"
    status, frames = record.get("status"), record.get("frames")
    if not isinstance(frames, list):
        return "'frames' is not a list"
    if status == "error":
        return None if isinstance(record.get("error"), str) else "an error record without error"
    if status != "ok":
        return f"status {status!r} is neither 'ok' nor 'error'"
    if not frames:
        return "no frames"
    return next((p for p in map(_frame_problem, frames) if p), None)


def _arrays_problem(arrays: dict[str, np.ndarray]) -> str | None:
    for name, value in arrays.items():
        kind, ndim = _ARRAYS.get(name, (value.dtype.kind, value.ndim))
        if value.dtype.kind != kind or value.ndim != ndim:
            return f"{name!r} is {value.dtype}{list(value.shape)}"
    return None


def _settings_file_problem(data: Any) -> str | None:
    """Why ``data`` is not a valid ``settings.json`` (``{"key": str, "settings": {...}}``)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("key"), str) or not isinstance(data.get("settings"), dict):
        return "no settings key and settings"
    return None


class WorkStore:
    """Finished per-input work of an audit, under ``<out>/.medig``.

    Attributes
    ----------
    damaged : set of str
        Keys whose arrays :meth:`load_arrays` found unusable since this store was made.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir) / ".medig"
        self.records = self.root / "records"
        self.arrays = self.root / "arrays"
        self.settings_path = self.root / "settings.json"
        self.damaged: set[str] = set()
        self._warned: set[Path] = set()

    def record_path(self, key: str) -> Path:
        return self.records / f"{key}.json"

    def array_path(self, key: str, frame: int) -> Path:
        return self.arrays / f"{key}-{frame}.npz"

    def _ignore(self, path: Path, reason: str, then: str = "it is computed again") -> None:
        """One warning line per unusable file (the same file is never reported twice)."""
        if path in self._warned:
            return
        self._warned.add(path)
        if len(self._warned) <= _WARN_AT_MOST:
            log.warning("ignoring %s: %s; %s", path, reason, then)
        elif len(self._warned) == _WARN_AT_MOST + 1:
            log.warning("more unusable files under %s are ignored and computed again "
                        "(not listed)", self.root)

    def is_done(self, key: str) -> bool:
        """Whether the input's work is final (a valid record that does not ask to be retried)."""
        record = self.load(key)
        return record is not None and not record.get("retry", False)

    def load(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``; None if absent, or unreadable or invalid (see
        :func:`record_problem`; warned once)."""
        path = self.record_path(key)
        try:
            record = read_json_file(path)
        except FileNotFoundError:
            return None
        except ValueError as error:
            self._ignore(path, str(error))
            return None
        problem = record_problem(record, key)
        if problem:
            self._ignore(path, problem)
            return None
        return record

    def save(self, key: str, record: dict[str, Any], *, key_sha256: str,
             settings_key: str) -> None:
        """Store an input's record (write arrays first: a record promises its arrays exist).

        ``key_sha256`` (the file's SHA-256, or its :func:`unreadable_key`) and ``settings_key``
        are what ``key`` was made from; they are stored with the record, so that a record
        found under another key is not believed.
        """
        if record_key(key_sha256, settings_key) != key:
            raise ValueError(f"record key {key} is not made from {key_sha256}, {settings_key}")
        body = {k: v for k, v in record.items() if k != "digest"}
        body.update(key_sha256=key_sha256, settings_key=settings_key)
        # ASCII JSON: an error text quoting a non-UTF-8 name (a surrogate escape) stays writable.
        atomic_write(self.record_path(key), json.dumps({**body, "digest": _digest(body)}))

    def discard(self, key: str) -> None:
        """Delete the record and arrays of ``key`` (damaged work, computed again)."""
        self.record_path(key).unlink(missing_ok=True)
        for path in self.arrays.glob(f"{key}-*.npz") if self.arrays.is_dir() else ():
            path.unlink(missing_ok=True)
        self.damaged.discard(key)

    def save_arrays(self, key: str, frame: int, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        # As Any: numpy's stub would let **kwds fill its allow_pickle argument
        members: dict[str, Any] = arrays
        owner: dict[str, Any] = {_OWNER: np.array(f"{key}-{frame}")}
        np.savez_compressed(buffer, **members, **owner)
        atomic_write(self.array_path(key, frame), buffer.getvalue())

    def load_arrays(self, key: str, frame: int, *names: str,
                    optional: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
        """Arrays ``names`` (default: all) of frame ``frame`` of ``key``'s work, and those of
        ``optional`` that it holds (work stored by an older medig may lack them).

        None, with a warning and ``key`` added to :attr:`damaged`, when the file is missing,
        unreadable (truncated, bit-flipped: zip checks every member's CRC as it is read), lacks
        a name, holds an array of the wrong kind, or belongs to other work.
        """
        path = self.array_path(key, frame)
        problem: str | None
        try:
            with open_regular(path) as fh, np.load(fh, allow_pickle=False) as data:
                owner = str(data[_OWNER]) if _OWNER in data.files else None
                arrays = {n: data[n] for n in (names or [f for f in data.files if f != _OWNER])}
                arrays.update({n: data[n] for n in optional if n in data.files})
        except Exception as error:  # noqa: BLE001 - any bytes reach np.load: zip, zlib, npy errors
            problem = "missing" if isinstance(error, FileNotFoundError) else (
                f"unreadable ({type(error).__name__})")
        else:
            problem = ("it belongs to other work" if owner != f"{key}-{frame}"
                       else _arrays_problem(arrays))
        if problem:
            self._ignore(path, problem)
            self.damaged.add(key)
            return None
        return arrays

    def save_settings(self, settings_key: str, settings: dict[str, Any],
                      first_started: str | None = None) -> None:
        """Record the numeric settings of the work stored here and when the audit's first run
        started (the manifest's backup: study pages and DICOM objects are dated by it)."""
        atomic_write(self.settings_path, json.dumps({"key": settings_key, "settings": settings,
                                                     "first_started": first_started}))

    def load_settings(self) -> dict[str, Any] | None:
        """What :meth:`save_settings` stored (``{"key", "settings"}``); None if absent or invalid
        (warned once)."""
        try:
            data = read_json_file(self.settings_path)
        except FileNotFoundError:
            return None
        except ValueError as error:
            self._ignore(self.settings_path, str(error), "it is written again")
            return None
        problem = _settings_file_problem(data)
        if problem:
            self._ignore(self.settings_path, problem, "it is written again")
            return None
        return data

    def settings_keys(self) -> set[str]:
        """The settings keys that the stored records were computed with (reads every record:
        the evidence of last resort when ``manifest.json`` and ``settings.json`` are gone)."""
        found = set()
        for path in self.records.glob("*.json") if self.records.is_dir() else ():
            try:
                record = read_json_file(path)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and isinstance(record.get("settings_key"), str) and \
                    record_problem(record, path.stem) is None:
                found.add(record["settings_key"])
        return found
