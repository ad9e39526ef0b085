# SPDX-License-Identifier: Apache-2.0
"""``read_image`` / ``read_frames``: sniff the content, dispatch to the raster or DICOM reader."""

from __future__ import annotations

import os
import re
from typing import Any

from medig.io._image import IMAGE_EXTENSIONS, FundusImage, ImageReadError
from medig.io.dicom import read_dicom
from medig.io.raster import read_raster
from medig.io.sniff import HEADER_BYTES, SUPPORTED_FORMATS, sniff_bytes

__all__ = ["read_frames", "read_image"]

_FRAME_SUFFIX = re.compile(r"^(?P<file>.+)#(?P<frame>[^#/\\]*)$")


def _split_frame(path: str | os.PathLike) -> tuple[str, int | None]:
    """``"a.dcm#3"`` -> ``("a.dcm", 3)``; a file whose real name contains ``#`` wins."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if os.path.exists(text):
        return text, None
    match = _FRAME_SUFFIX.match(text)
    if match and os.path.isfile(match["file"]):
        index = match["frame"]
        if not index.isdigit():
            raise ImageReadError(
                match["file"], f"invalid frame index {index[:20]!r} (expected '#<k>', 0-based)"
            )
        return match["file"], int(index)
    return text, None


def _read(path: str | os.PathLike, include_phi: bool, all_frames: bool) -> list[FundusImage]:
    source, frame = _split_frame(path)
    if not os.path.exists(source):
        raise ImageReadError(source, "no such file")
    if os.path.isdir(source):
        raise ImageReadError(source, "is a directory, not an image file")
    try:
        size = os.path.getsize(source)
        with open(source, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise ImageReadError(source, f"cannot open file ({exc.strerror or 'I/O error'})") from None
    if size == 0:
        raise ImageReadError(source, "empty file (0 bytes)")

    fmt = sniff_bytes(head)
    ext = os.path.splitext(source)[1].lower()
    claimed = IMAGE_EXTENSIONS.get(ext)
    if fmt is None:
        if claimed:
            raise ImageReadError(source, f"named {ext} but content is not an image")
        raise ImageReadError(
            source, "not a supported image (content is not JPEG, PNG, TIFF or DICOM)"
        )
    if fmt not in SUPPORTED_FORMATS:
        raise ImageReadError(
            source, f"unsupported image format {fmt.upper()} (supported: JPEG, PNG, TIFF, DICOM)"
        )

    if fmt == "dicom":
        file_meta, frames = read_dicom(
            source,
            source,
            frame,
            include_phi=include_phi,
            force=head[128:132] != b"DICM",
            expect_single=not all_frames,
        )
    else:
        file_meta, frames = read_raster(source, source, fmt, frame)

    images = []
    for k, pixels, frame_meta in frames:
        metadata: dict[str, Any] = {
            **file_meta,
            **frame_meta,
            "width": int(pixels.shape[-1]),
            "height": int(pixels.shape[-2]),
            "frame": k,
            "extension_mismatch": claimed is not None and claimed != fmt,
        }
        name = source if file_meta["frames"] == 1 else f"{source}#{k}"
        images.append(FundusImage(pixels=pixels, path=name, metadata=metadata))
    return images


def read_image(path: str | os.PathLike, include_phi: bool = False) -> FundusImage:
    """Read one fundus image (JPEG, PNG, TIFF or DICOM) as RGB ``uint8``.

    The format is sniffed from the content, not the extension (a PNG named ``.jpg`` is read as
    PNG and flagged ``metadata["extension_mismatch"] = True``).

    Parameters
    ----------
    path : str or path-like
        The file; ``"<file>#<k>"`` picks frame ``k`` (0-based) of a multi-frame DICOM. A
        multi-frame DICOM without ``#<k>`` is refused: use :func:`read_frames`.
    include_phi : bool, default False
        Explicit opt-in to copy identifying DICOM attributes (PatientName, PatientID,
        PatientBirthDate, StudyDate, AccessionNumber, ...) into the metadata, as strings. By
        default no identifying attribute appears in the metadata, errors or logs.

    Returns
    -------
    FundusImage
        ``pixels`` ``(3, H, W)`` ``uint8`` on the CPU, ``path``, ``metadata``.

    Raises
    ------
    ImageReadError
        One-line ``"<path>: <reason>"`` for every unreadable input: missing, empty, not an image,
        truncated or corrupt, unsupported format or transfer syntax (naming the decoder to install),
        DICOM without pixel data, above :data:`medig.io.MAX_PIXELS`, frame index out of range.
    """
    return _read(path, include_phi, all_frames=False)[0]


def read_frames(path: str | os.PathLike, include_phi: bool = False) -> list[FundusImage]:
    """Read every frame of a file (one for JPEG, PNG, TIFF and single-frame DICOM).

    Parameters
    ----------
    path : str or path-like
        The file (``"<file>#<k>"`` reads only frame ``k``).
    include_phi : bool, default False
        See :func:`read_image`.

    Returns
    -------
    list of FundusImage
        In frame order; for a multi-frame DICOM each ``path`` is ``"<file>#<k>"`` (0-based).

    Raises
    ------
    ImageReadError
        As :func:`read_image`.
    """
    return _read(path, include_phi, all_frames=True)
