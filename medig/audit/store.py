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
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from medig.utils import atomic_write

__all__ = ["WorkStore", "output_name", "record_key", "safe_relative_path"]

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\]')


def record_key(file_sha256: str, settings_key: str) -> str:
    """Key of an input's finished work: its bytes and the settings that produced the numbers."""
    return hashlib.sha256(f"{file_sha256}:{settings_key}".encode()).hexdigest()[:32]


def safe_relative_path(name: str) -> str:
    """A relative POSIX path that cannot escape its folder, for outputs named after inputs.

    ``..``, absolute roots, drive letters, control and shell-special characters are removed; the
    frame suffix ``#k`` of multi-frame DICOM becomes ``_frame<k>``. Letters of any script are kept
    so clinicians recognise their files.
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    stem, _, frame = name.partition("#")
    parts = []
    for part in PurePosixPath(stem).parts:
        part = _UNSAFE.sub("_", part).strip()
        if part in ("", ".", "..", "/") or set(part) == {"."}:
            continue
        parts.append(part.lstrip("."))
    safe = "/".join(p for p in parts if p) or "unnamed"
    if frame:
        safe += f"_frame{re.sub(r'[^0-9]', '', frame) or '0'}"
    return safe


def output_name(rel: str, frame: int | None = None) -> str:
    """The relative name (without extension) of the outputs of input ``rel`` (frame ``frame``)."""
    return safe_relative_path(rel if frame is None else f"{rel}#{frame}")


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
        atomic_write(self.record_path(key), json.dumps(record, ensure_ascii=False))

    def save_arrays(self, key: str, frame: int, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
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
