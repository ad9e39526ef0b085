# SPDX-License-Identifier: Apache-2.0
"""The two types every reader returns or raises: :class:`FundusImage` and :class:`ImageReadError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "FundusImage",
    "ImageReadError",
    "shape_reason",
    "too_large_reason",
]

#: Decompression-bomb limit: a file whose header declares more pixels than this (width x height x
#: frames, summed over all frames of a multi-frame file) is refused *before* any pixel is decoded.
#: 100 megapixels is ~4x the largest fundus cameras (about 24 MP) and decodes to 300 MB of RGB
#: uint8, so real fundus photographs pass and a forged header cannot make the reader allocate GBs.
MAX_PIXELS: int = 100_000_000

#: Most frames read from one multi-frame file (every frame also counts toward :data:`MAX_PIXELS`).
#: Fundus series hold a few to a few dozen frames; a header declaring 200,000 frames of 1x1 pixel
#: passes the pixel limit but costs a tensor, a metadata dict and a result row per frame.
MAX_FRAMES: int = 1_000

#: Smallest image side accepted, in pixels, and the largest ratio of the long side to the short
#: one. A 3x5000 strip is not a photograph of a retina, and the field-of-view detection, which
#: works on a 256-pixel copy of the image, has nothing left of a side shorter than 1/8 of the other.
MIN_SIDE: int = 16
MAX_ASPECT: int = 8

#: Largest file read (1 GiB). Every file is read into memory once, hashed and decoded from those
#: bytes; a file declaring at most :data:`MAX_PIXELS` pixels needs far less (100 MP of 16-bit RGB
#: is 600 MB), so anything bigger is refused before it is read.
MAX_FILE_BYTES: int = 1 << 30

#: File extensions that make a file a candidate even when its content does not sniff as an image
#: (so a corrupt ``.jpg`` is reported, not silently skipped), mapped to the format they claim.
IMAGE_EXTENSIONS: dict[str, str] = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
}


def too_large_reason(pixels: int | None) -> str:
    """The one wording of the decompression-bomb refusal, with the declared size when known."""
    declared = f" ({pixels:,} pixels)" if pixels else ""
    return (
        f"image too large{declared}: refusing to decode more than medig.io.MAX_PIXELS = "
        f"{MAX_PIXELS:,} pixels (possible decompression bomb)"
    )


def shape_reason(width: int, height: int, frames: int = 1) -> str | None:
    """Why an image of ``width`` x ``height`` (x ``frames``) is refused before decoding, or None.

    The one check of the declared size against :data:`MAX_PIXELS`, :data:`MAX_FRAMES`,
    :data:`MIN_SIDE` and :data:`MAX_ASPECT`, shared by every reader.
    """
    if frames > MAX_FRAMES:
        return (
            f"too many frames ({frames:,}): refusing to decode more than medig.io.MAX_FRAMES = "
            f"{MAX_FRAMES:,} frames per file"
        )
    if width * height * max(frames, 1) > MAX_PIXELS:
        return too_large_reason(width * height * max(frames, 1))
    short, long = sorted((width, height))
    if short < MIN_SIDE:
        return (
            f"image too small ({width}x{height} pixels): medig needs at least "
            f"medig.io.MIN_SIDE = {MIN_SIDE} pixels on each side"
        )
    if long > MAX_ASPECT * short:
        return (
            f"image too narrow ({width}x{height} pixels): the long side may be at most "
            f"medig.io.MAX_ASPECT = {MAX_ASPECT} times the short one"
        )
    return None


class ImageReadError(Exception):
    """An input file could not be read as a fundus image.

    The message is one line, ``"<path>: <reason>"``. The reason is written by medig, never copied
    from a decoder's exception, because pydicom messages may quote element values (patient names).

    Parameters
    ----------
    path : str
        The file (``"file.dcm#3"`` for one frame of a multi-frame file).
    reason : str
        Why it could not be read, in words a user can act on.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the caller passed
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keeps the (path, reason) signature when sent between processes (DataLoader workers).
        return (type(self), (self.path, self.reason))


@dataclass
class FundusImage:
    """One decoded fundus image (one frame of a multi-frame file).

    Attributes
    ----------
    pixels : torch.Tensor
        ``uint8`` tensor of shape ``(3, H, W)``, RGB, on the CPU, contiguous.
    path : str
        The file it came from; ``"<path>#<k>"`` (0-based ``k``) for a frame of a multi-frame file.
    metadata : dict
        JSON-serialisable plain values: always ``format`` (``"jpeg"``, ``"png"``, ``"tiff"``,
        ``"dicom"``), ``width``, ``height``, ``frames`` (in the file), ``frame`` (this one, 0-based),
        ``source_mode`` (how the file stores pixels), ``bits_stored``, ``extension_mismatch``; for
        DICOM also allow-listed, non-identifying attributes (Modality, SOPClassUID, laterality,
        PhotometricInterpretation, TransferSyntaxUID, ...). Identifying attributes appear only when
        the file was read with ``include_phi=True``.
    """

    pixels: torch.Tensor
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.pixels.shape[-2])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.pixels.shape[-1])
