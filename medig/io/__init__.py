# SPDX-License-Identifier: Apache-2.0
"""Reading fundus images: JPEG, PNG, TIFF and DICOM to RGB ``uint8`` tensors, safely.

* :func:`read_image` / :func:`read_frames` sniff the format from the content and decode to
  :class:`FundusImage` (``pixels`` ``(3, H, W)`` ``uint8``, ``path``, ``metadata``).
* No patient identifier leaves the reader unless ``include_phi=True``: DICOM metadata is an
  allow-list, decoder messages are never forwarded, decoder warnings and logs are silenced.
* Every bad input raises :class:`ImageReadError` (``.path``, ``.reason``, one-line message);
  files declaring more than :data:`MAX_PIXELS` pixels are refused before decoding.
* :func:`find_images` lists candidate files; :func:`decode_jpeg_batch` decodes JPEG bytes in
  batches, with nvJPEG on CUDA devices.
"""

from __future__ import annotations

from medig.io._image import IMAGE_EXTENSIONS, MAX_PIXELS, FundusImage, ImageReadError
from medig.io.discover import find_images
from medig.io.jpeg import decode_jpeg_batch
from medig.io.read import read_frames, read_image
from medig.io.sniff import sniff_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "FundusImage",
    "ImageReadError",
    "decode_jpeg_batch",
    "find_images",
    "read_frames",
    "read_image",
    "sniff_file",
]
