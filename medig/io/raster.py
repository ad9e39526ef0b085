# SPDX-License-Identifier: Apache-2.0
"""Decode JPEG, PNG and TIFF files with Pillow into RGB ``uint8`` frames.

Conversion rule (see also :mod:`medig.io._pixels`): 8-bit greyscale and bilevel images are
replicated to three channels; palette, CMYK, YCbCr, LAB and HSV images go through Pillow's RGB
conversion (CMYK without ICC colour management); alpha is dropped; 16/32-bit integer greyscale is
scaled by its declared depth (PNG sBIT, TIFF MaxSampleValue, else the container's 16 bits);
floating-point images must hold values in [0, 1] (scaled by 255), anything else is refused rather
than guessed. EXIF orientation is applied, as every photo viewer does, so left/right and up/down
in the tensor match what the grader saw. Raster files have one frame: the first page of a TIFF
(later pages are often reduced-resolution thumbnails; ``metadata["pages"]`` counts them) and the
default image of an animated PNG.

Pillow raises many exception types on hostile input (OSError, SyntaxError, ValueError,
struct.error, ...), so decoder calls catch ``Exception`` and raise :class:`ImageReadError`.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from medig.io._image import ImageReadError, shape_reason, too_large_reason
from medig.io._pixels import bits_top, scale_to_uint8, to_rgb_tensor
from medig.io._quiet import captured_stderr, quiet, reports_truncation
from medig.io.jpeg import libjpeg_reports_truncation, refuse_truncated_stream

__all__ = ["read_raster"]

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF"}
_RGB_CONVERT = frozenset({"P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", "La"})
_TIFF_MAX_SAMPLE_VALUE = 281
_TIFF_BITS_PER_SAMPLE = 258


def _png_significant_bits(data: bytes) -> int | None:
    """The PNG ``sBIT`` chunk's significant bits (largest channel), if the file declares them.

    Pillow does not expose sBIT; a 12-bit camera sensor saved as 16-bit PNG declares 12 here.
    """
    pos = 8
    for _ in range(64):  # sBIT must precede IDAT; stop early on odd files
        header = data[pos : pos + 8]
        if len(header) < 8:
            return None
        length, ctype = struct.unpack(">I4s", header)
        if ctype == b"sBIT":
            values = data[pos + 8 : pos + 8 + min(length, 4)]
            return max(values) if values else None
        if ctype in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _declared_top(im: Image.Image, fmt: str, data: bytes) -> int:
    """Declared maximum sample value of a >8-bit integer greyscale image."""
    if fmt == "tiff":
        tags = getattr(im, "tag_v2", {})
        for tag, as_bits in ((_TIFF_MAX_SAMPLE_VALUE, False), (_TIFF_BITS_PER_SAMPLE, True)):
            value = tags.get(tag)
            if isinstance(value, (tuple, list)):
                value = max(value) if value else None
            if isinstance(value, int) and value > 0:
                return bits_top(value) if as_bits else value
    if fmt == "png":
        bits = _png_significant_bits(data)
        if bits and 1 <= bits <= 16:
            return bits_top(bits)
    return bits_top(16)  # PNG's deepest samples; also Pillow's "I;16" container


def _frame_to_rgb(im: Image.Image, fmt: str, data: bytes) -> tuple[torch.Tensor, int]:
    """Decoded Pillow frame -> ((3, H, W) uint8, declared bits of the source samples)."""
    mode = im.mode
    if mode == "1":
        return to_rgb_tensor(np.asarray(im.convert("L"))), 1
    if mode in _RGB_CONVERT:
        return to_rgb_tensor(np.asarray(im.convert("RGB"))), 8
    if mode in ("L", "LA", "RGB", "RGBA", "RGBX"):
        return to_rgb_tensor(np.asarray(im)), 8
    if mode == "I" or mode.startswith("I;16"):
        top = _declared_top(im, fmt, data)
        return to_rgb_tensor(scale_to_uint8(np.asarray(im), top)), top.bit_length()
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min(initial=0.0) < 0.0 or arr.max(initial=0.0) > 1.0:
            raise ValueError("float-range")
        return to_rgb_tensor(np.rint(arr * 255.0).astype(np.uint8)), 32
    raise TypeError(mode)


def _check_jpeg_stream(data: bytes, display: str) -> None:
    """Refuse a JPEG whose scans are cut short before Pillow fills the rest with grey.

    libjpeg only *warns* when the entropy-coded data ends early (a truncated file that still has
    an end-of-image marker, or a frame header that claims more pixels than the data holds) and
    Pillow ignores its warnings: the stream's structure is checked first (cheap, see
    :mod:`medig.io.codestream`), then libjpeg-turbo is asked. Other structural problems are left
    to Pillow, which reads many slightly malformed camera files.
    """
    refuse_truncated_stream(data, display)
    if libjpeg_reports_truncation(data):
        raise ImageReadError(display, "truncated JPEG data (the decoder reached the end early)")


#: libtiff's and libjpeg's warnings when a strip or scan ends early.
_TRUNCATION_WORDS = ("premature end", "truncat", "read error", "unexpected end")


def _open(data: bytes, display: str, fmt: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
    except Image.DecompressionBombError:
        raise ImageReadError(display, too_large_reason(None)) from None
    except Exception:  # noqa: BLE001
        raise ImageReadError(display, f"corrupt {fmt.upper()} header (not decodable)") from None


def read_raster(
    data: bytes, display: str, fmt: str, frame: int | None
) -> tuple[dict[str, Any], list[tuple[int, torch.Tensor, dict[str, Any]]]]:
    """Decode a JPEG/PNG/TIFF file's content (its only frame: ``frame`` must be ``None`` or 0).

    Returns the file-level metadata and ``(index, pixels, frame_metadata)`` triples. Raises
    :class:`~medig.io.ImageReadError` naming ``display`` for every failure.
    """
    with quiet():
        im = _open(data, display, fmt)
        with im:
            width, height = im.size
            refused = shape_reason(width, height)  # header only: nothing decoded yet
            if refused:
                raise ImageReadError(display, refused)
            if fmt == "jpeg":
                _check_jpeg_stream(data, display)
            if frame not in (None, 0):
                raise ImageReadError(
                    display, f"frame index {frame} out of range (file has 1 frame)"
                )
            metadata: dict[str, Any] = {"format": fmt, "frames": 1}
            if fmt == "tiff":
                try:
                    metadata["pages"] = int(getattr(im, "n_frames", 1))
                except Exception:  # noqa: BLE001
                    raise ImageReadError(display, "corrupt TIFF page directory") from None
            # libtiff and libjpeg print their warnings straight to the C stderr: caught here, so
            # a hostile file leaves no noise on the console; a cut-short strip is an error.
            with captured_stderr() as messages:
                pixels, frame_meta = _decode_frame(im, fmt, data, display)
            if reports_truncation(messages, _TRUNCATION_WORDS):
                raise ImageReadError(display, f"truncated {fmt.upper()} data (the decoder "
                                              "reached the end early)")
    return metadata, [(0, pixels, frame_meta)]


def _decode_frame(
    im: Image.Image, fmt: str, data: bytes, display: str
) -> tuple[torch.Tensor, dict[str, Any]]:
    where = display
    try:
        im.load()
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        rotated = ImageOps.exif_transpose(im) if orientation != 1 else im
    except Image.DecompressionBombError:
        raise ImageReadError(where, too_large_reason(None)) from None
    except Exception as exc:  # noqa: BLE001
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageReadError(where, f"{kind} {fmt.upper()} data (decoding failed)") from None
    try:
        pixels, bits = _frame_to_rgb(rotated, fmt, data)
    except ValueError:
        raise ImageReadError(
            where, "floating-point pixels outside [0, 1] have no defined 8-bit mapping"
        ) from None
    except TypeError:
        raise ImageReadError(where, f"unsupported pixel mode {rotated.mode!r}") from None
    return pixels, {"source_mode": im.mode, "bits_stored": bits, "exif_orientation": orientation}
