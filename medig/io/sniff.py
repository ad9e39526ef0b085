# SPDX-License-Identifier: Apache-2.0
"""Tell a file's format from its first bytes (magic numbers), never from its extension."""

from __future__ import annotations

import os
import struct

from medig.utils import NotRegularFileError, open_regular

__all__ = ["FORMAT_NAMES", "HEADER_BYTES", "SUPPORTED_FORMATS", "sniff_bytes", "sniff_file"]

#: How many leading bytes :func:`sniff_bytes` needs (the DICOM magic sits at offset 128).
HEADER_BYTES = 132

#: Formats medig decodes. Other recognised formats are reported by name so the error is useful.
SUPPORTED_FORMATS = ("jpeg", "png", "tiff", "dicom")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    # recognised but not supported: named in the error instead of "not an image"
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),  # raw J2K codestream
    (b"\xff\x0a", "jpegxl"),  # JPEG XL codestream
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jpegxl"),
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"8BPS", "psd"),
    (b"\x76\x2f\x31\x01", "openexr"),
)

#: How recognised formats are named in error messages.
FORMAT_NAMES: dict[str, str] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "tiff": "TIFF",
    "dicom": "DICOM",
    "gif": "GIF",
    "bmp": "BMP",
    "webp": "WebP",
    "heif": "HEIF/HEIC",
    "avif": "AVIF",
    "jpeg2000": "JPEG 2000",
    "jpegxl": "JPEG XL",
    "pdf": "PDF",
    "zip": "ZIP archive",
    "gzip": "gzip archive",
    "psd": "Photoshop PSD",
    "openexr": "OpenEXR",
}

# ISO base media file brands of still-image formats (HEIF, AVIF), at offset 8 after "ftyp".
_FTYP_BRANDS = {
    b"heic": "heif", b"heix": "heif", b"hevc": "heif", b"heim": "heif", b"heis": "heif",
    b"mif1": "heif", b"msf1": "heif", b"avif": "avif", b"avis": "avif",
}

# Two-letter DICOM value representations, for recognising preamble-less explicit-VR files.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)


def _looks_like_bare_dicom(head: bytes) -> bool:
    """True if ``head`` starts like a DICOM data set written without preamble and "DICM".

    Old archives and some modalities write the data set straight from its first element, usually
    in group 0x0002 (file meta) or 0x0008 (identifying module). Requiring such a group plus a
    valid VR (explicit) or a plausible value length (implicit) keeps text files and other binary
    formats from being handed to pydicom's ``force=True`` reader, which accepts almost anything.
    """
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0100:
            continue
        if head[4:6] in _VRS:
            return True
        (length,) = struct.unpack(order + "I", head[4:8])
        if order == "<" and length <= 1024:  # implicit VR is little endian only
            return True
    return False


def sniff_bytes(head: bytes) -> str | None:
    """Format of a file from its first :data:`HEADER_BYTES` bytes.

    Parameters
    ----------
    head : bytes
        The leading bytes of the file (fewer is fine for a short file).

    Returns
    -------
    str or None
        ``"jpeg"``, ``"png"``, ``"tiff"`` or ``"dicom"`` for supported formats, the name of a
        recognised unsupported format (``"bmp"``, ``"gif"``, ``"webp"``, ``"jpeg2000"``, ``"pdf"``,
        ... see :data:`FORMAT_NAMES`), or ``None``.
    """
    if head[128:132] == b"DICM":
        return "dicom"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[head[8:12]]
    # "BM" alone is too common a start of text; also require a known BMP info-header size.
    if head[:2] == b"BM" and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if _looks_like_bare_dicom(head):
        return "dicom"
    return None


def sniff_file(path: str | os.PathLike) -> str | None:
    """Format of the file at ``path`` from its content (see :func:`sniff_bytes`).

    Raises ``OSError`` if the file cannot be opened; returns ``None`` for an empty file and for
    anything that is not a regular file (a FIFO or a device is never opened: reading one blocks
    or never ends).
    """
    try:
        with open_regular(path) as fh:
            return sniff_bytes(fh.read(HEADER_BYTES))
    except NotRegularFileError:
        return None
