# SPDX-License-Identifier: Apache-2.0
"""``read_image`` / ``read_frames``: sniff the content, dispatch to the raster or DICOM reader."""

from __future__ import annotations

import os
import re
from typing import Any

from medig.io._files import file_error_reason, not_regular_reason
from medig.io._image import IMAGE_EXTENSIONS, MAX_FILE_BYTES, FundusImage, ImageReadError
from medig.io.dicom import read_dicom
from medig.io.raster import read_raster
from medig.io.sniff import FORMAT_NAMES, HEADER_BYTES, SUPPORTED_FORMATS, sniff_bytes
from medig.utils import OPEN_FLAGS

__all__ = ["decode_image_bytes", "read_file_bytes", "read_frames", "read_image"]

_FRAME_SUFFIX = re.compile(r"^(?P<file>.+)#(?P<frame>[^#/\\]*)$")


def _split_frame(path: str | os.PathLike) -> tuple[str, int | None]:
    """``"a.dcm#3"`` -> ``("a.dcm", 3)``; a file whose real name contains ``#`` wins."""
    text = os.fsdecode(os.fspath(path))
    if os.path.lexists(text):
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


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of a regular file, read once (then hashed and decoded from memory).

    Only regular files are opened: a FIFO, socket or device (``/dev/zero``) is refused from its
    ``stat`` (opening a FIFO blocks, reading ``/dev/zero`` never ends), and the check is repeated on
    the open descriptor so a file swapped in between is refused too.

    Raises
    ------
    ImageReadError
        Missing file, broken symbolic link, link loop, directory, non-regular file, permission
        denied, I/O error, or a file above :data:`medig.io.MAX_FILE_BYTES`. These are about the
        file system, not the content: the audit retries them on its next run.
    """
    text = os.fsdecode(os.fspath(path))
    try:
        reason = not_regular_reason(os.stat(text).st_mode)
    except OSError as exc:
        raise ImageReadError(text, file_error_reason(text, exc)) from None
    if reason:
        raise ImageReadError(text, reason)
    try:
        fd = os.open(text, OPEN_FLAGS)
    except OSError as exc:
        raise ImageReadError(text, file_error_reason(text, exc)) from None
    try:
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            reason = not_regular_reason(info.st_mode)
            if reason:
                raise ImageReadError(text, reason)
            if info.st_size > MAX_FILE_BYTES:
                raise ImageReadError(text, file_too_large_reason(info.st_size))
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ImageReadError(text, f"cannot read file ({exc.strerror or 'I/O error'})") from None
    if len(data) > MAX_FILE_BYTES:  # grew while being read
        raise ImageReadError(text, file_too_large_reason(len(data)))
    return data


def file_too_large_reason(size: int) -> str:
    return (f"file too large ({size:,} bytes): refusing to read more than "
            f"medig.io.MAX_FILE_BYTES = {MAX_FILE_BYTES:,} bytes")


def decode_image_bytes(
    data: bytes,
    path: str | os.PathLike,
    *,
    include_phi: bool = False,
    frame: int | None = None,
    all_frames: bool = True,
) -> list[FundusImage]:
    """Decode a file's content, already read into memory (see :func:`read_file_bytes`).

    Parameters
    ----------
    data : bytes
        The whole file.
    path : str or path-like
        The file's name: for errors, for ``FundusImage.path`` and for the extension check.
    include_phi : bool
        See :func:`read_image`.
    frame : int, optional
        Only this frame (0-based) of a multi-frame DICOM.
    all_frames : bool
        Every frame (as :func:`read_frames`); False refuses a multi-frame file without ``frame``.

    Raises
    ------
    ImageReadError
        For every content that is not a readable image; the reason depends on the bytes alone.
    """
    source = os.fsdecode(os.fspath(path))
    if not data:
        raise ImageReadError(source, "empty file (0 bytes)")
    head = bytes(data[:HEADER_BYTES])
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
        named = f"named {ext}; " if claimed else ""
        raise ImageReadError(
            source,
            f"unsupported image format {FORMAT_NAMES.get(fmt, fmt.upper())} "
            f"({named}supported: JPEG, PNG, TIFF, DICOM)",
        )

    if fmt == "dicom":
        file_meta, frames = read_dicom(
            data,
            source,
            frame,
            include_phi=include_phi,
            force=head[128:132] != b"DICM",
            expect_single=not all_frames,
        )
    else:
        file_meta, frames = read_raster(data, source, fmt, frame)

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


def _read(path: str | os.PathLike, include_phi: bool, all_frames: bool) -> list[FundusImage]:
    source, frame = _split_frame(path)
    data = read_file_bytes(source)
    return decode_image_bytes(data, source, include_phi=include_phi, frame=frame,
                              all_frames=all_frames)


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
