# SPDX-License-Identifier: Apache-2.0
"""The two types every reader returns or raises: :class:`FundusImage` and :class:`ImageReadError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "FundusImage",
    "ImageReadError",
    "too_large_reason",
]

#: Decompression-bomb limit: a file whose header declares more pixels than this (width x height x
#: frames, summed over all frames of a multi-frame file) is refused *before* any pixel is decoded.
#: 100 megapixels is ~4x the largest fundus cameras (about 24 MP) and decodes to 300 MB of RGB
#: uint8, so real fundus photographs pass and a forged header cannot make the reader allocate GBs.
MAX_PIXELS: int = 100_000_000

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
