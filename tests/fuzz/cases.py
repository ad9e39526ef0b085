# SPDX-License-Identifier: Apache-2.0
"""Hand-made hostile inputs: one file (or file-system entry) per failure found by the fuzzing
campaigns, each with the row an audit must give it, and hostile lesion masks for them.

Everything is generated here from synthetic pixels (no bundled file needed), small enough for CI:
the largest file is about 1 MB. Files with different names have different bytes, except where
the same bytes under different names is the case itself (a content-keyed cache must not give
one name another's name-derived fields).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import unicodedata
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tests.io.conftest import build_dicom, rgb_fundus

__all__ = ["Expected", "dicom_bytes", "jpeg_bytes", "make_edge_cases", "make_masks",
           "patch_sof"]


@dataclass(frozen=True)
class Expected:
    """The row an audit must write for a case: status and a fragment of the reason."""

    status: str  # "ok" or "error"
    reason: str = ""  # lower-case fragment of the error reason
    frames: int = 1  # rows (frames) of an ok multi-frame file
    laterality: str | None = None  # "R" / "L" the row must give (checked when set)
    dicom: bool = False  # an ok DICOM with UIDs: --dicom-out must write its Secondary Capture(s)


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


def fixed_uid(text: str) -> str:
    """A fixed ``2.25.`` UID for ``text`` (the corpus is the same on every run)."""
    return "2.25." + str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))


def charset_dicom(charset: str | list[str], patient_name: str, seed: int) -> bytes:
    """A fundus DICOM whose SpecificCharacterSet is ``charset`` (values the reader audits fine
    but a DICOM writer may refuse: an empty first value, an ISO 2022 form, an unknown term)."""
    ds = build_dicom(rgb_fundus(48, 64, seed=seed), laterality="L")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = fixed_uid(f"sop{seed}")
    ds.StudyInstanceUID = fixed_uid(f"study{seed}")
    ds.SeriesInstanceUID = fixed_uid(f"series{seed}")
    ds.SpecificCharacterSet = charset
    ds.PatientName = patient_name
    log = logging.getLogger("pydicom")
    level, log.level = log.level, logging.ERROR
    try:
        with warnings.catch_warnings():  # pydicom warns about an unknown term, and writes it
            warnings.simplefilter("ignore")
            return dicom_bytes(ds)
    finally:
        log.setLevel(level)


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
    put("l" * 240 + ".jpg", jpeg_bytes(seed=20), Expected("ok"))
    put("\u773c" * 79 + ".jpg", jpeg_bytes(seed=21), Expected("ok"))
    # 3. names that are not UTF-8 (written as bytes), escaped as %FF in every output; bytes no
    # other name has, so nothing derived from another name can stand in for theirs
    put(b"caf\xff.jpg", jpeg_bytes(seed=22), Expected("ok"), row="caf%FF.jpg")
    put(b"\xff\xfe.jpg", jpeg_bytes(seed=23), Expected("ok"), row="%FF%FE.jpg")
    put(b"caf\xe9_left.jpg", jpeg_bytes(seed=24), Expected("ok", laterality="L"),
        row="caf%E9_left.jpg")
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
    put("eye.dcm", dicom_bytes(build_dicom(two)), Expected("ok", frames=2, dicom=True))
    put("eye.dcm#1", jpeg_bytes(seed=8), Expected("ok"), row="eye.dcm%231")
    # 12. the same bytes under names with different hints: each row's laterality (and study)
    # comes from its own name, never from the first name's cached work
    twin = jpeg_bytes(seed=25)
    for name, eye in (("a_left.jpg", "L"), ("b_right.jpg", "R"), ("c.jpg", None),
                      ("10_left.jpg", "L"), ("10_right.jpg", "R")):
        put(name, twin, Expected("ok", laterality=eye))
    # 13. character sets the reader accepts: the DICOM output of every file must survive them
    put("charset_jis.dcm", charset_dicom(["", "ISO 2022 IR 87"],
                                         "Yamada^Tarou=\u5c71\u7530^\u592a\u90ce", 30),
        Expected("ok", dicom=True))
    put("charset_iso2022_latin1.dcm",
        charset_dicom("ISO 2022 IR 100", "M\u00fcller^J\u00fcrgen", 31), Expected("ok", dicom=True))
    put("charset_unknown.dcm", charset_dicom("ISO_IR 999", "Doe^Jane", 32),
        Expected("ok", dicom=True))
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


def mask_png(h: int, w: int, fill: str = "disk") -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    if fill == "disk":
        mask = np.hypot(yy - h / 2, xx - w / 2) < min(h, w) / 5
    else:
        mask = np.full((h, w), fill == "all")
    return png_bytes(mask.astype(np.uint8) * 255)


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    data = bytearray(mask_png(16, 16))
    at = data.index(b"IHDR") + 4
    data[at : at + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[at - 4 : at + 13]))
    data[at + 13 : at + 17] = struct.pack(">I", crc)
    return bytes(data)


def make_masks(folder: str | os.PathLike, special_files: bool = True) -> dict[str, bool]:
    """Lesion masks for the cases of :func:`make_edge_cases`, in ``folder`` (the ``--masks``
    folder); returns, per row path, whether the row must carry localisation figures.

    Good masks (for a JPEG, a non-UTF-8 name, one frame of a multi-frame DICOM, a DICOM with an
    ISO 2022 character set) and hostile ones: another size, truncated, a header claiming 1.6
    gigapixels, all ones, all zeros, a FIFO, a link loop, a link to ``/dev/zero``, a folder named
    like a mask, a mask with no image.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, bool] = {}

    def put(name: str | bytes, data: bytes, row: str, figures: bool) -> None:
        path = os.path.join(os.fsencode(root), name) if isinstance(name, bytes) else root / name
        with open(path, "wb") as fh:
            fh.write(data)
        expect[row] = figures

    put("good.png", mask_png(96, 128), "good.jpg", True)
    put(b"caf\xff.png", mask_png(96, 128), "caf%FF.jpg", True)
    put("eye_frame0.png", mask_png(48, 64), "eye.dcm#0", True)
    put("eye_frame1.png", mask_png(10, 10), "eye.dcm#1", False)  # another size: no mask
    put("charset_jis.png", mask_png(48, 64), "charset_jis.dcm", True)
    put("a_b.png", mask_png(96, 128)[:60], "a_b.jpg", False)  # truncated
    put("a<b.png", _png_claiming(40000, 40000), "a<b.jpg", False)
    put("l" * 240 + ".png", mask_png(96, 128, "all"), "l" * 240 + ".jpg", True)
    put("\u773c" * 79 + ".png", mask_png(96, 128, "none"), "\u773c" * 79 + ".jpg", False)
    put("orphan.png", mask_png(96, 128), "orphan.jpg", False)  # no such image: ignored
    if special_files and hasattr(os, "mkfifo"):
        os.mkfifo(root / "c.png")  # never opened (opening it would block the audit)
        expect["c.jpg"] = False
        os.symlink("b_right.png", root / "b_right.png")
        expect["b_right.jpg"] = False
        os.symlink("/dev/zero", root / "10_left.png")
        expect["10_left.jpg"] = False
        (root / "10_right.png").mkdir()
        expect["10_right.jpg"] = False
    return expect
