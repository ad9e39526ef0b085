# SPDX-License-Identifier: Apache-2.0
"""Hand-made hostile inputs: one file (or file-system entry) per failure found by the fuzzing
fuzzing campaign, each with the row an audit must give it.

Everything is generated here from synthetic pixels (no bundled file needed), small enough for CI:
the largest file is about 1 MB.
"""
from __future__ import annotations

import io
import os
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tests.io.conftest import build_dicom, rgb_fundus

__all__ = ["Expected", "dicom_bytes", "jpeg_bytes", "make_edge_cases", "patch_sof"]


@dataclass(frozen=True)
class Expected:
    """The row an audit must write for a case: status and a fragment of the reason."""

    status: str  # "ok" or "error"
    reason: str = ""  # lower-case fragment of the error reason
    frames: int = 1  # rows (frames) of an ok multi-frame file


def jpeg_bytes(h: int = 96, w: int = 128, seed: int = 0, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb_fundus(h, w, seed)).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def patch_sof(data: bytes, width: int, height: int) -> bytes:
    """A JPEG (or a DICOM holding one) whose first SOF0 frame header claims ``width`` x
    ``height``."""
    raw = bytearray(data)
    at = raw.index(b"\xff\xc0")
    raw[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def _unknown_vr(data: bytes, tag: bytes, vr: bytes) -> bytes:
    """``data`` with the VR of the explicit-VR element ``tag`` (4 bytes, little endian) replaced
    by the unknown ``UW``, as one flipped bit does (US -> UW)."""
    at = data.index(tag + vr)
    return data[: at + 4] + b"UW" + data[at + 6 :]


def jpeg_dicom(pixels: np.ndarray) -> pydicom.Dataset:
    """A JPEG-baseline DICOM (as fundus cameras write) around a Pillow-encoded JPEG."""
    ds = build_dicom(pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, subsampling=1)  # 4:2:2
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def _frames_dicom(h: int, w: int, frames: int, colour: bool) -> bytes:
    shape = (frames, h, w, 3) if colour else (frames, h, w)
    ds = build_dicom(np.zeros(shape, np.uint8), photometric=None if colour else "MONOCHROME2")
    return dicom_bytes(ds)


def _pixel_length_past_eof(data: bytes) -> bytes:
    at = data.index(b"\xe0\x7f\x10\x00OB") if b"\xe0\x7f\x10\x00OB" in data \
        else data.index(b"\xe0\x7f\x10\x00OW")
    (length,) = struct.unpack("<I", data[at + 8 : at + 12])
    return data[: at + 8] + struct.pack("<I", length + 0xF0000000) + data[at + 12 :]


def _webp() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb_fundus(64, 64)).save(buffer, "WEBP")
    return buffer.getvalue()


def make_edge_cases(folder: str | os.PathLike, special_files: bool = True) -> dict[str, Expected]:
    """Write the hand-made cases into ``folder``; returns the expected row per row path.

    ``special_files`` adds a FIFO, a link to ``/dev/zero``, a broken link, a link loop and a
    folder named like an image (POSIX only).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    good_jpeg = jpeg_bytes()
    plain = build_dicom(rgb_fundus(48, 64))
    plain_bytes = dicom_bytes(plain)
    cases: dict[str, Expected] = {}

    def put(name: str | bytes, data: bytes, expected: Expected, row: str | None = None) -> None:
        path = os.path.join(os.fsencode(root), name) if isinstance(name, bytes) else root / name
        with open(path, "wb") as fh:
            fh.write(data)
        cases[row or (name if isinstance(name, str) else os.fsdecode(name))] = expected

    # 1. unknown VRs (one bit turns US into UW) on elements read before or as default= arguments
    put("uw_bits_allocated.dcm", _unknown_vr(plain_bytes, b"\x28\x00\x00\x01", b"US"),
        Expected("error", "bitsallocated"))
    put("uw_photometric.dcm", _unknown_vr(plain_bytes, b"\x28\x00\x04\x00", b"CS"),
        Expected("error", "corrupt dicom"))
    no_pixels = build_dicom(rgb_fundus(48, 64))
    del no_pixels.PixelData
    put("uw_sop_class.dcm", _unknown_vr(dicom_bytes(no_pixels), b"\x08\x00\x16\x00", b"UI"),
        Expected("error", "no pixel data"))
    # 2. long names: 240 ASCII bytes, and 79 CJK characters (237 bytes)
    put("l" * 240 + ".jpg", good_jpeg, Expected("ok"))
    put("\u773c" * 79 + ".jpg", good_jpeg, Expected("ok"))
    # 3. a name that is not UTF-8 (written as bytes), escaped as %FF in every output
    put(b"caf\xff.jpg", good_jpeg, Expected("ok"), row="caf%FF.jpg")
    # 4. many small frames: 4x4 RGB x 20,000 (1 MB) and 1x1 x 200,000
    put("frames_4x4x20000.dcm", _frames_dicom(4, 4, 20_000, True), Expected("error", "frames"))
    put("frames_1x1x200000.dcm", _frames_dicom(1, 1, 200_000, False),
        Expected("error", "frames"))
    # 5. a 6 KB JPEG-baseline DICOM whose header says 64x48 and whose JPEG says 60000x60000
    put("jpeg_bomb.dcm", patch_sof(dicom_bytes(jpeg_dicom(rgb_fundus(48, 64))), 60000, 60000),
        Expected("error", "60000x60000"))
    # 9. wrong ok/error and misleading reasons
    put("jpeg_claims_9000x11000.jpg", patch_sof(good_jpeg, 11000, 9000),
        Expected("error", "truncated"))
    put("pixels_past_eof.dcm", _pixel_length_past_eof(plain_bytes),
        Expected("error", "truncated"))
    put("cut_at_300.dcm", plain_bytes[:300], Expected("error", "truncated"))
    put("webp_named.jpg", _webp(), Expected("error", "webp"))
    put("thin_3x5000.png", png_bytes(np.full((3, 5000, 3), 128, np.uint8)),
        Expected("error", "too small"))
    put("thin_5000x3.png", png_bytes(np.full((5000, 3, 3), 128, np.uint8)),
        Expected("error", "too small"))
    put("thin_1x20000000.png", png_bytes(np.full((1, 20_000_000), 128, np.uint8)),
        Expected("error", "too small"))
    # 10. names that sanitising merges, and a real file named like a frame
    put("a<b.jpg", jpeg_bytes(seed=1), Expected("ok"))
    put("a>b.jpg", jpeg_bytes(seed=2), Expected("ok"))
    put("a_b.jpg", jpeg_bytes(seed=3), Expected("ok"))
    put(unicodedata.normalize("NFC", "\u00e9t\u00e9.jpg"), jpeg_bytes(seed=4), Expected("ok"))
    put(unicodedata.normalize("NFD", "\u00e9t\u00e9.jpg"), jpeg_bytes(seed=5), Expected("ok"),
        row=unicodedata.normalize("NFD", "\u00e9t\u00e9.jpg"))
    two = np.stack([rgb_fundus(48, 64, seed=s) for s in (6, 7)])
    put("eye.dcm", dicom_bytes(build_dicom(two)), Expected("ok", frames=2))
    put("eye.dcm#1", jpeg_bytes(seed=8), Expected("ok"), row="eye.dcm%231")
    # a control
    put("good.jpg", good_jpeg, Expected("ok"))
    if special_files and hasattr(os, "mkfifo"):
        # 6. special files never opened; 11. entries that used to get no row
        os.mkfifo(root / "pipe.jpg")
        cases["pipe.jpg"] = Expected("error", "fifo")
        os.symlink("/dev/zero", root / "zero.dcm")
        cases["zero.dcm"] = Expected("error", "character device")
        os.symlink("nowhere.jpg", root / "gone.jpg")
        cases["gone.jpg"] = Expected("error", "broken symbolic link")
        os.symlink("loop.jpg", root / "loop.jpg")
        cases["loop.jpg"] = Expected("error", "loop")
        (root / "folder.jpg").mkdir()
        cases["folder.jpg/"] = Expected("error", "directory")
    return cases
