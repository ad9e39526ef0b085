# SPDX-License-Identifier: Apache-2.0
"""The identity of a DICOM image (study, series, instance, eye), read from its header only.

For medig's internal use: grouping images into studies (under a keyed hash, see
:mod:`medig.audit.study`) and referencing the source instance from derived DICOM objects. These
UIDs identify a patient's examination, so they never reach results, logs or errors unless the user
opted in with ``--include-phi`` (and then only inside DICOM output).

The header is read with ``stop_before_pixels`` inside the same guard as :mod:`medig.io.dicom`:
warnings and pydicom logging are silenced (pydicom quotes element values in its messages) and any
pydicom exception means "no identity", never an error message that could carry a value.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydicom

from medig.io._quiet import quiet
from medig.io.dicom import _check_inflated_size
from medig.io.read import read_file_bytes
from medig.io.sniff import HEADER_BYTES, sniff_bytes

__all__ = ["DicomIds", "read_dicom_header", "read_dicom_ids"]

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_LATERALITY = ("R", "L", "B", "U")


@dataclass(frozen=True)
class DicomIds:
    """Identifying UIDs and the eye of one DICOM file (internal: never written without opt-in)."""

    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    sop_class_uid: str | None
    laterality: str | None  # ImageLaterality, else Laterality: "R", "L", "B" or "U"
    frames: int = 1

    def __repr__(self) -> str:  # a stray log line or traceback must not print the UIDs
        return f"DicomIds(laterality={self.laterality!r}, frames={self.frames})"

    __str__ = __repr__


def _uid(ds: pydicom.Dataset, name: str) -> str | None:
    try:
        text = str(ds.get(name, "") or "").strip().rstrip("\x00")
    except Exception:  # noqa: BLE001 - a malformed value counts as absent
        return None
    return text if text and len(text) <= 64 and _UID_RE.match(text) else None


def _laterality(ds: pydicom.Dataset | Mapping[str, Any]) -> str | None:
    for name in ("ImageLaterality", "Laterality"):
        try:
            value = str(ds.get(name, "") or "").strip().upper()
        except Exception:  # noqa: BLE001, S112
            continue
        if value in _LATERALITY:
            return value
    return None


def read_dicom_header(path: str | os.PathLike) -> pydicom.Dataset | None:
    """A DICOM file's header (up to the pixel data), or None if it is not a readable DICOM.

    The file is read under the reader's limits (:func:`medig.io.read.read_file_bytes`: regular
    files only, at most ``MAX_FILE_BYTES``, no deflate bomb) and parsed with ``stop_before_pixels``
    inside :func:`medig.io._quiet.quiet`. The dataset identifies the patient: internal use only.
    """
    try:
        data = read_file_bytes(path)
        if sniff_bytes(data[:HEADER_BYTES]) != "dicom":
            return None
        _check_inflated_size(data, os.fspath(path))
        force = data[128:132] != b"DICM"
        with quiet():
            return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=force)
    except Exception:  # noqa: BLE001 - unreadable header: no identity, and no message with values
        return None


def dicom_ids(ds: pydicom.Dataset) -> DicomIds:
    """The UIDs and laterality of a header; invalid UIDs (not dotted digits, longer than 64
    characters) are None."""
    with quiet():
        try:
            frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        except Exception:  # noqa: BLE001
            frames = 1
        return DicomIds(
            study_uid=_uid(ds, "StudyInstanceUID"),
            series_uid=_uid(ds, "SeriesInstanceUID"),
            sop_uid=_uid(ds, "SOPInstanceUID"),
            sop_class_uid=_uid(ds, "SOPClassUID"),
            laterality=_laterality(ds),
            frames=frames,
        )


def read_dicom_ids(path: str | os.PathLike) -> DicomIds | None:
    """The UIDs and laterality in a DICOM file's header (:func:`read_dicom_header`), or None if it
    is not a readable DICOM."""
    ds = read_dicom_header(path)
    return None if ds is None else dicom_ids(ds)
