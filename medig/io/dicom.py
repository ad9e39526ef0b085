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
multi-frame file is decoded on its own.

Before any pixel is decoded: the declared size is checked against :data:`~medig.io.MAX_PIXELS`,
:data:`~medig.io.MAX_FRAMES`, :data:`~medig.io.MIN_SIDE` and :data:`~medig.io.MAX_ASPECT`; a
Pixel Data element that runs past the end of the file is refused as truncated; and each
compressed frame's own stream header (JPEG SOF, JPEG-LS SOF55, J2K SIZ, see
:mod:`medig.io.codestream`) must agree with Rows, Columns and SamplesPerPixel, because decoders
allocate what the stream says, not what the DICOM header says.

pydicom and its plugins raise many exception types on malformed files (an unknown VR such as a
bit-flipped ``US`` read as ``UW`` raises ``NotImplementedError`` when the element is first
touched), so the whole read runs inside one guard that turns any exception into
:class:`ImageReadError` with a reason of our own.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from typing import Any

import numpy as np
import pydicom
import torch
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_color_lut, get_decoder, pixel_array
from pydicom.tag import BaseTag

from medig.io._image import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageReadError,
    shape_reason,
    too_large_reason,
)
from medig.io._pixels import bits_top, scale_to_uint8, to_rgb_tensor
from medig.io._quiet import captured_stderr, quiet
from medig.io.codestream import CodestreamError, stream_info
from medig.io.jpeg import libjpeg_reports_truncation

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
_PIXEL_DATA_TAG = BaseTag(0x7FE00010)
_FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)
# Large values (the pixel data) of a file read from disk stay there until needed.
_DEFLATED = b"1.2.840.10008.1.2.1.99"
# Transfer syntaxes whose frames are JPEG, JPEG-LS or JPEG 2000 streams (checked before decoding).
_STREAM_SYNTAXES = frozenset({
    dicom_uid.JPEGBaseline8Bit, dicom_uid.JPEGExtended12Bit, dicom_uid.JPEGLossless,
    dicom_uid.JPEGLosslessSV1, dicom_uid.JPEGLSLossless, dicom_uid.JPEGLSNearLossless,
    dicom_uid.JPEG2000Lossless, dicom_uid.JPEG2000, dicom_uid.HTJ2KLossless,
    dicom_uid.HTJ2KLosslessRPCL, dicom_uid.HTJ2K,
})

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


def _meta_end(data: bytes) -> int | None:
    """Offset where the data set starts after the file meta (group 0002) of a Part-10 file."""
    if data[128:132] != b"DICM" or len(data) < 144 or data[132:138] != b"\x02\x00\x00\x00UL":
        return None
    (length,) = struct.unpack("<I", data[140:144])
    return 144 + length


def _deflated(data: bytes) -> bool:
    """Whether the data set is zlib-deflated (its element offsets are not file offsets)."""
    meta_end = _meta_end(data)
    return meta_end is not None and _DEFLATED in data[132:meta_end]


def _ends_inside_element(ds: Dataset, data: bytes) -> bool:
    """True if pydicom stopped inside an element: a value runs past the end of the file, or bytes
    are left after the last element read (pydicom drops a final element cut short, silently)."""
    size = len(data)
    meta_end = _meta_end(data)
    if meta_end is not None and meta_end >= size:
        return True  # cut inside the file meta, or nothing after it
    if _deflated(data):
        return False  # offsets are into the inflated data set; zlib itself reports a cut
    last_end: int | None = None
    elements = list(ds._dict.values())  # raw elements: reading them converts nothing
    if not elements:
        return True  # no element could be read after the preamble and file meta
    for elem in elements:
        tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
        if tell is None or length is None or length == 0xFFFFFFFF:
            last_end = None  # parsed sequence or undefined length: no reliable end offset
            continue
        value = getattr(elem, "value", None)
        if tell + length > size or (isinstance(value, bytes) and len(value) < length):
            return True
        last_end = tell + length
    return last_end is not None and last_end < size


def _pixel_data_truncated(ds: Dataset, data: bytes) -> bool:
    """True if the (7FE0,0010) Pixel Data element runs past the end of the file.

    pydicom reads what is there without complaint (a length field 4 GB too long still gives a
    decodable first frame), so the declared length is checked against the bytes actually read.
    """
    raw = ds._dict.get(_PIXEL_DATA_TAG)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    value = getattr(raw, "value", None)
    if length is None or tell is None:
        return False
    if _deflated(data):  # offsets are into the inflated data set: compare with what was read
        return length != 0xFFFFFFFF and isinstance(value, (bytes, bytearray)) \
            and len(value) < length
    if length == 0xFFFFFFFF:  # encapsulated: a sequence delimiter item must end the value
        little = getattr(raw, "is_little_endian", True) is not False
        delimiter = b"\xfe\xff\xdd\xe0" if little else b"\xff\xfe\xe0\xdd"
        return data.find(delimiter, tell) < 0
    if tell + length > len(data):
        return True
    return isinstance(value, (bytes, bytearray)) and len(value) < length


def _truncated(ds: Dataset | None, data: bytes) -> bool:
    try:
        if ds is None:
            meta_end = _meta_end(data)
            return meta_end is not None and meta_end >= len(data)
        return _pixel_data_truncated(ds, data) or _ends_inside_element(ds, data)
    except Exception:  # noqa: BLE001 - only chooses between two error wordings
        return False


def _check_inflated_size(data: bytes, display: str) -> None:
    """A deflated data set (zlib) must not inflate past :data:`MAX_FILE_BYTES` (a zip bomb)."""
    if not _deflated(data):
        return
    # Inflated 1 MiB at a time and counted, never held: the check must not cost what it guards.
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    tail: bytes | memoryview = memoryview(data)[_meta_end(data):]
    size = 0
    try:
        while size <= MAX_FILE_BYTES:
            out = inflater.decompress(tail, 1 << 20)
            size, tail = size + len(out), inflater.unconsumed_tail
            if inflater.eof or not (out or tail):
                break
    except zlib.error:
        raise ImageReadError(display, "corrupt deflated DICOM data set") from None
    if size > MAX_FILE_BYTES:
        raise ImageReadError(
            display, f"deflated data set inflates past medig.io.MAX_FILE_BYTES = "
            f"{MAX_FILE_BYTES:,} bytes (possible decompression bomb)")


def _open_dataset(data: bytes, display: str, force: bool) -> Dataset:
    """Parse a DICOM file's content without decoding pixels."""
    try:
        return pydicom.dcmread(io.BytesIO(data), force=force)
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


def _check_native_length(ds: Dataset, display: str, rows: int, cols: int, n_frames: int,
                         samples: int, photometric: str) -> None:
    """Native pixel data must hold every declared frame (pydicom would pad or fail later)."""
    allocated = _int_attr(ds, "BitsAllocated", display)
    if allocated not in (1, 8, 16, 32, 64):
        raise ImageReadError(display, "missing or invalid BitsAllocated")
    if photometric == "YBR_FULL_422":  # two chroma samples shared by each pair of pixels
        samples = 2
    needed = rows * cols * n_frames * samples * allocated
    needed = (needed + 7) // 8
    length = len(ds.PixelData)
    if length < needed:
        raise ImageReadError(
            display,
            f"Pixel Data holds {length:,} bytes, fewer than the {needed:,} that Rows, Columns, "
            "frames and samples declare (corrupt header or truncated file)",
        )


def _check_streams(ds: Dataset, display: str, ts: str, indices: list[int], n_frames: int,
                   rows: int, cols: int, samples: int) -> None:
    """Each compressed frame's own stream header must match the DICOM header (see module doc)."""
    if ts not in _STREAM_SYNTAXES:
        return
    wanted = set(indices)
    found = 0
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=n_frames)
        for k, stream in enumerate(frames):
            found = k + 1
            if k not in wanted:
                continue
            where = display if n_frames == 1 else f"{display}#{k}"
            try:
                info = stream_info(stream, complete=False)
            except CodestreamError as error:
                raise ImageReadError(where, f"corrupt pixel data: {error.reason}") from None
            if (info.width, info.height) != (cols, rows):
                raise ImageReadError(
                    where,
                    f"compressed frame is {info.width}x{info.height} pixels but the DICOM "
                    f"header says {cols}x{rows} (corrupt or forged header; not decoded)",
                )
            if info.pixels > MAX_PIXELS:  # (cannot happen when it matches the checked header)
                raise ImageReadError(where, too_large_reason(info.pixels))
            if info.components != samples:
                raise ImageReadError(
                    where,
                    f"compressed frame has {info.components} component(s) but the DICOM header "
                    f"says {samples} sample(s) per pixel (not decoded)",
                )
            try:
                stream_info(stream)  # then the whole stream: not cut short
            except CodestreamError as error:
                prefix = "" if error.truncated else "corrupt pixel data: "
                raise ImageReadError(where, f"{prefix}{error.reason}") from None
            if info.codec == "jpeg" and info.precision == 8 and info.process != "lossless" \
                    and libjpeg_reports_truncation(stream):
                raise ImageReadError(
                    where, "truncated JPEG data (the decoder reached the end early)")
            if found > max(wanted):
                break
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001
        raise ImageReadError(display, "corrupt encapsulated pixel data (fragment items)") \
            from None
    if found <= max(wanted):
        raise ImageReadError(
            display, f"encapsulated pixel data holds {found} frame(s) but NumberOfFrames says "
            f"{n_frames} (truncated or corrupt)")


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
    data: bytes,
    display: str,
    frame: int | None,
    include_phi: bool = False,
    force: bool = False,
    expect_single: bool = False,
) -> tuple[dict[str, Any], list[tuple[int, torch.Tensor, dict[str, Any]]]]:
    """Decode one frame (``frame``) or all frames (``None``) of a DICOM file.

    Parameters
    ----------
    data : bytes
        The file's content, as read once by :func:`medig.io.read.read_file_bytes` (which refuses
        FIFOs, devices and files above the size limit before reading).
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
    data = bytes(data)
    with quiet():
        ds: Dataset | None = None
        try:
            _check_inflated_size(data, display)
            ds = _open_dataset(data, display, force)
            return _read_dataset(ds, data, display, frame, include_phi, expect_single)
        except ImageReadError as error:
            raise error from None  # no pydicom exception chained (its text may quote values)
        except Exception:  # noqa: BLE001 - e.g. an unknown VR, raised when the element is touched
            reason = (
                "truncated DICOM file (ends inside an element)"
                if _truncated(ds, data)
                else "corrupt DICOM header (malformed or unreadable element)"
            )
            raise ImageReadError(display, reason) from None


def _read_dataset(
    ds: Dataset, data: bytes, display: str, frame: int | None, include_phi: bool,
    expect_single: bool,
) -> tuple[dict[str, Any], list[tuple[int, torch.Tensor, dict[str, Any]]]]:
    if _PIXEL_DATA_TAG not in ds._dict:
        if any(tag in ds._dict for tag in _FLOAT_PIXEL_TAGS):
            raise ImageReadError(display, "float pixel data is not supported")
        if _truncated(ds, data):
            raise ImageReadError(display, "truncated DICOM file (ends before its Pixel Data)")
        try:
            sop = _valid_uid(ds["SOPClassUID"].value) if "SOPClassUID" in ds else None
        except Exception:  # noqa: BLE001 - only names the kind of file
            sop = None
        kind = f" (SOP Class {dicom_uid.UID(sop).name})" if sop else ""
        raise ImageReadError(display, f"DICOM file has no pixel data{kind}")
    if _pixel_data_truncated(ds, data):
        raise ImageReadError(display, "truncated DICOM file (Pixel Data runs past the end)")
    rows = _int_attr(ds, "Rows", display)
    cols = _int_attr(ds, "Columns", display)
    n_frames = max(1, _int_attr(ds, "NumberOfFrames", display, default=1))
    refused = shape_reason(cols, rows, n_frames)
    if refused:
        raise ImageReadError(display, refused)
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
    allocated = _int_attr(ds, "BitsAllocated", display)
    bits = _int_attr(ds, "BitsStored", display, default=allocated)
    if not 1 <= bits <= 32:
        raise ImageReadError(display, "missing or invalid BitsStored")
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
    indices = list(range(n_frames)) if frame is None else [frame]
    if dicom_uid.UID(ts).is_compressed:
        _check_streams(ds, display, ts, indices, n_frames, rows, cols, samples)
    else:
        _check_native_length(ds, display, rows, cols, n_frames, samples, photometric)

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
    for k in indices:
        where = display if n_frames == 1 else f"{display}#{k}"
        try:
            with captured_stderr():  # C decoders (OpenJPEG, libjpeg) print to the C stderr
                arr = pixel_array(ds, index=k)
            if arr.shape[:2] != (rows, cols):
                raise ValueError("decoded frame size differs from the header")
            pixels = _frame_to_rgb(arr, ds, photometric, bits, signed)
        except Exception:  # noqa: BLE001
            reason = (
                "truncated DICOM file (ends inside Pixel Data)"
                if _truncated(ds, data)
                else f"corrupt pixel data (cannot decode {_transfer_syntax_label(ts)})"
            )
            raise ImageReadError(where, reason) from None
        out.append((k, pixels, dict(frame_meta)))
    return metadata, out
