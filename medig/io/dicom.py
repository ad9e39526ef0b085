# SPDX-License-Identifier: Apache-2.0
"""Decode DICOM pixel data with pydicom into RGB ``uint8`` frames, leaking no patient data.

Metadata comes from an *allow-list* of attributes that do not identify a patient
(:data:`SAFE_ATTRIBUTES`); the identifying ones (:data:`PHI_ATTRIBUTES`, after the PS3.15 Annex E
Basic Profile) are added only on explicit opt-in. Every pydicom exception is replaced by a reason
written here, and pydicom warnings and logging are silenced during the read, because pydicom
quotes offending element values (a malformed PatientName, say) in its messages.

Pixel rule (see :mod:`medig.io._pixels`): pydicom converts YBR_FULL / YBR_FULL_422 (and the JPEG
2000 YBR_ICT / YBR_RCT) to RGB; samples deeper than 8 bits are scaled by BitsStored; signed samples
are shifted by ``2**(BitsStored-1)``; MONOCHROME2 is replicated to three channels and MONOCHROME1
is inverted first (0 is white there); PALETTE COLOR goes through its lookup table. Each frame of a
multi-frame file is decoded on its own, so memory holds one frame at a time.

pydicom and its plugins raise many exception types on malformed files, so every call into them
catches ``Exception`` and raises :class:`ImageReadError` with a reason of our own.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any

import numpy as np
import pydicom
import torch
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, get_decoder, pixel_array

from medig.io._image import MAX_PIXELS, ImageReadError, too_large_reason
from medig.io._pixels import bits_top, scale_to_uint8, to_rgb_tensor
from medig.io._quiet import quiet

__all__ = ["PHI_ATTRIBUTES", "SAFE_ATTRIBUTES", "read_dicom"]

#: Attributes copied into ``FundusImage.metadata``: acquisition and encoding facts that do not
#: identify a patient, a visit or an instance (no dates, names, IDs or instance UIDs).
SAFE_ATTRIBUTES: tuple[str, ...] = (
    "Modality",
    "SOPClassUID",
    "ImageLaterality",
    "Laterality",
    "ImageType",
    "BodyPartExamined",
    "HorizontalFieldOfView",
    "Manufacturer",
    "ManufacturerModelName",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "PlanarConfiguration",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "LossyImageCompression",
    "LossyImageCompressionMethod",
    "LossyImageCompressionRatio",
)

#: Identifying attributes (PS3.15 Annex E Basic Profile) returned only with ``include_phi=True``.
PHI_ATTRIBUTES: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "AcquisitionDateTime",
    "StudyDescription",
    "SeriesDescription",
    "InstitutionName",
    "ReferringPhysicianName",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CS_RE = re.compile(r"[^A-Z0-9_ ]")  # a code string quoted in an error carries nothing else
_PIXEL_DATA_TAG = 0x7FE00010
_FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)
# Large values (the pixel data) stay on disk until needed: the size check runs before any read.
_DEFER = "256 KB"

# Which installable decoder handles each compressed transfer syntax (for the error message).
_PLUGIN_HINT: dict[str, str] = {
    dicom_uid.JPEGBaseline8Bit: "pillow or pylibjpeg-libjpeg",
    dicom_uid.JPEGExtended12Bit: "pylibjpeg-libjpeg",
    dicom_uid.JPEGLossless: "pylibjpeg-libjpeg",
    dicom_uid.JPEGLosslessSV1: "pylibjpeg-libjpeg",
    dicom_uid.JPEGLSLossless: "pylibjpeg-libjpeg or pyjpegls",
    dicom_uid.JPEGLSNearLossless: "pylibjpeg-libjpeg or pyjpegls",
    dicom_uid.JPEG2000Lossless: "pylibjpeg-openjpeg",
    dicom_uid.JPEG2000: "pylibjpeg-openjpeg",
    dicom_uid.HTJ2KLossless: "pylibjpeg-openjpeg",
    dicom_uid.HTJ2KLosslessRPCL: "pylibjpeg-openjpeg",
    dicom_uid.HTJ2K: "pylibjpeg-openjpeg",
    dicom_uid.RLELossless: "pylibjpeg-rle",
}


def _valid_uid(value: object) -> str | None:
    text = str(value).strip().rstrip("\x00")
    return text if len(text) <= 64 and _UID_RE.match(text) else None


def _plain(value: Any) -> Any:
    """A pydicom value as a JSON-serialisable plain value (str, int, float or list of them)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return None
    return str(value)


def _attributes(ds: Dataset, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        try:
            if name not in ds:
                continue
            value = _plain(ds[name].value)
        except Exception:  # noqa: BLE001, S112 - a malformed value is left out, never logged (PHI)
            continue
        if name.endswith("UID"):
            value = _valid_uid(value)
        if value not in (None, "", []):
            out[name] = value
    return out


def _transfer_syntax_label(ts: str) -> str:
    uid = _valid_uid(ts)
    if uid is None:
        return "an invalid Transfer Syntax UID"
    name = dicom_uid.UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def _pixel_data_truncated(path: str | os.PathLike) -> bool:
    """True if the file ends inside its (7FE0,0010) Pixel Data element.

    pydicom drops an element cut short by the end of the file without raising, so a truncated
    file would otherwise look like a file that never had pixel data.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    for tag in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
        at = data.find(tag)  # the first: the element itself, not bytes inside its value
        if at < 0:
            continue
        order = "<" if tag[0] == 0xE0 else ">"
        head = data[at + 4 : at + 12]
        if len(head) < 4:
            return True
        if head[:2] in (b"OB", b"OW", b"UN"):
            if len(head) < 8:
                return True
            (length,) = struct.unpack(order + "I", head[4:8])
            start = at + 12
        else:
            (length,) = struct.unpack(order + "I", head[:4])
            start = at + 8
        if length == 0xFFFFFFFF:  # encapsulated: a sequence delimiter must follow
            delimiter = b"\xfe\xff\xdd\xe0" if order == "<" else b"\xff\xfe\xe0\xdd"
            return data.find(delimiter, start) < 0
        return start + length > len(data)
    return False


def _ends_inside_element(ds: Dataset, path: str | os.PathLike) -> bool:
    """True if pydicom stopped inside an element: a value runs past the end of the file, or bytes
    are left after the last element read (pydicom drops a final element cut short, silently)."""
    size = os.path.getsize(path)
    last_end: int | None = None
    for elem in ds.values():
        tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
        if tell is None or length is None or length == 0xFFFFFFFF:
            last_end = None  # parsed sequence or undefined length: no reliable end offset
            continue
        if tell + length > size:
            return True
        last_end = tell + length
    return last_end is not None and last_end < size


def _truncated(ds: Dataset, path: str | os.PathLike) -> bool:
    try:
        return _pixel_data_truncated(path) or _ends_inside_element(ds, path)
    except Exception:  # noqa: BLE001 - only chooses between two error wordings
        return False


def _open_dataset(path: str | os.PathLike, display: str, force: bool) -> Dataset:
    try:
        return pydicom.dcmread(path, force=force, defer_size=_DEFER)
    except Exception:  # noqa: BLE001
        reason = "not a readable DICOM file (corrupt or truncated header)"
        raise ImageReadError(display, reason) from None


def _ensure_transfer_syntax(ds: Dataset, display: str) -> str:
    """The data set's transfer syntax; inferred from the encoding for files without file meta."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    # Preamble-less files have no file meta; native pixel data can still be read with the
    # encoding pydicom detected, compressed (encapsulated) data cannot be identified.
    if ds["PixelData"].is_undefined_length:
        raise ImageReadError(display, "compressed pixel data but no Transfer Syntax UID")
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        ts = dicom_uid.ExplicitVRBigEndian
    elif implicit:
        ts = dicom_uid.ImplicitVRLittleEndian
    else:
        ts = dicom_uid.ExplicitVRLittleEndian
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = ts
    return str(ts)


def _check_decodable(ts: str, display: str) -> None:
    label = _transfer_syntax_label(ts)
    try:
        decoder = get_decoder(ts)
    except Exception:  # noqa: BLE001
        raise ImageReadError(display, f"unsupported transfer syntax {label}") from None
    if not decoder.is_available:
        hint = _PLUGIN_HINT.get(ts, "the pylibjpeg plugins or gdcm")
        raise ImageReadError(
            display, f"no decoder installed for transfer syntax {label}: install {hint}"
        )


def _int_attr(ds: Dataset, name: str, display: str, default: int | None = None) -> int:
    try:
        value = ds.get(name, default)
        if value is None or value == "":
            raise KeyError(name)
        return int(value)
    except Exception:  # noqa: BLE001
        raise ImageReadError(display, f"missing or invalid {name}") from None


def _frame_to_rgb(
    arr: np.ndarray, ds: Dataset, photometric: str, bits: int, signed: bool
) -> torch.Tensor:
    offset = 1 << (bits - 1) if signed else 0
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        lut_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        top = 255 if rgb.dtype == np.uint8 else bits_top(lut_bits if lut_bits in (8, 16) else 16)
        return to_rgb_tensor(scale_to_uint8(rgb, top))
    grey = scale_to_uint8(arr, bits_top(bits), offset)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return to_rgb_tensor(grey)


def read_dicom(
    path: str | os.PathLike,
    display: str,
    frame: int | None,
    include_phi: bool = False,
    force: bool = False,
    expect_single: bool = False,
) -> tuple[dict[str, Any], list[tuple[int, torch.Tensor, dict[str, Any]]]]:
    """Decode one frame (``frame``) or all frames (``None``) of a DICOM file.

    Parameters
    ----------
    path : path-like
        The file.
    display : str
        How the file is named in errors.
    frame : int or None
        0-based frame index, or ``None`` for every frame.
    include_phi : bool
        Add :data:`PHI_ATTRIBUTES` (as strings) to the metadata.
    force : bool
        Read a file without the 128-byte preamble and "DICM" prefix.
    expect_single : bool
        Refuse a multi-frame file (before decoding) when no frame was named.

    Returns
    -------
    (dict, list)
        File metadata and ``(index, pixels, frame_metadata)`` triples.
    """
    with quiet():
        ds = _open_dataset(path, display, force)
        if "PixelData" not in ds:
            if any(tag in ds for tag in _FLOAT_PIXEL_TAGS):
                raise ImageReadError(display, "float pixel data is not supported")
            if _truncated(ds, path):
                raise ImageReadError(display, "truncated DICOM file (ends inside an element)")
            sop = _valid_uid(ds.get("SOPClassUID", "")) if "SOPClassUID" in ds else None
            kind = f" (SOP Class {dicom_uid.UID(sop).name})" if sop else ""
            raise ImageReadError(display, f"DICOM file has no pixel data{kind}")
        rows = _int_attr(ds, "Rows", display)
        cols = _int_attr(ds, "Columns", display)
        n_frames = max(1, _int_attr(ds, "NumberOfFrames", display, default=1))
        if rows * cols * n_frames > MAX_PIXELS:
            raise ImageReadError(display, too_large_reason(rows * cols * n_frames))
        if expect_single and frame is None and n_frames > 1:
            raise ImageReadError(
                display,
                f"multi-frame DICOM ({n_frames} frames): name one frame as '<path>#<k>' "
                "(0-based) or use medig.io.read_frames",
            )
        if frame is not None and not 0 <= frame < n_frames:
            raise ImageReadError(
                display, f"frame index {frame} out of range (file has {n_frames} frame(s))"
            )
        ts = _ensure_transfer_syntax(ds, display)
        _check_decodable(ts, display)
        bits = _int_attr(ds, "BitsStored", display, default=ds.get("BitsAllocated"))
        signed = _int_attr(ds, "PixelRepresentation", display, default=0) == 1
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        samples = _int_attr(ds, "SamplesPerPixel", display, default=1)
        if not (
            (samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"))
            or samples == 3
        ):
            raise ImageReadError(
                display,
                f"unsupported photometric interpretation {_CS_RE.sub('?', photometric[:16])!r} "
                f"with {samples} sample(s) per pixel",
            )

        metadata: dict[str, Any] = {"format": "dicom", "frames": n_frames}
        metadata.update(_attributes(ds, SAFE_ATTRIBUTES))
        if "SOPClassUID" in metadata:
            metadata["SOPClassName"] = dicom_uid.UID(metadata["SOPClassUID"]).name
        label_uid = _valid_uid(ts)
        if label_uid:
            metadata["TransferSyntaxUID"] = label_uid
            metadata["TransferSyntaxName"] = dicom_uid.UID(label_uid).name
        if include_phi:
            phi = _attributes(ds, PHI_ATTRIBUTES)
            metadata.update({k: v if isinstance(v, str) else str(v) for k, v in phi.items()})

        frame_meta = {"source_mode": photometric, "bits_stored": bits}
        out = []
        for k in range(n_frames) if frame is None else [frame]:
            where = display if n_frames == 1 else f"{display}#{k}"
            try:
                arr = pixel_array(ds, index=k)
                pixels = _frame_to_rgb(arr, ds, photometric, bits, signed)
            except Exception:  # noqa: BLE001
                reason = (
                    "truncated DICOM file (ends inside Pixel Data)"
                    if _truncated(ds, path)
                    else f"corrupt pixel data (cannot decode {_transfer_syntax_label(ts)})"
                )
                raise ImageReadError(where, reason) from None
            out.append((k, pixels, dict(frame_meta)))
    return metadata, out
