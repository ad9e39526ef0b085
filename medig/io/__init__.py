# SPDX-License-Identifier: Apache-2.0
"""Reading fundus images: JPEG, PNG, TIFF and DICOM to RGB ``uint8`` tensors, safely.

* :func:`read_image` / :func:`read_frames` sniff the format from the content and decode to
  :class:`FundusImage` (``pixels`` ``(3, H, W)`` ``uint8``, ``path``, ``metadata``).
* No patient identifier leaves the reader unless ``include_phi=True``: DICOM metadata is an
  allow-list, decoder messages are never forwarded, decoder warnings and logs are silenced.
* Every bad input raises :class:`ImageReadError` (``.path``, ``.reason``, one-line message).
  Before any pixel is decoded, files are refused that declare more than :data:`MAX_PIXELS`
  pixels or :data:`MAX_FRAMES` frames, a side under :data:`MIN_SIDE` pixels or an aspect ratio
  over :data:`MAX_ASPECT`, that are larger than :data:`MAX_FILE_BYTES`, that are not regular
  files (FIFOs and devices are never opened), or whose compressed stream disagrees with its
  container or is cut short (:mod:`medig.io.codestream`).
* :func:`read_file_bytes` + :func:`decode_image_bytes` split a read in two, so a caller can hash
  exactly the bytes it decodes.
* :func:`find_images` lists candidate files, :func:`scan_inputs` also what cannot be read;
  :func:`decode_jpeg_batch` decodes JPEG bytes in batches, with nvJPEG on CUDA devices.
"""

from __future__ import annotations

from medig.io._image import (
    IMAGE_EXTENSIONS,
    MAX_ASPECT,
    MAX_FILE_BYTES,
    MAX_FRAMES,
    MAX_PIXELS,
    MIN_SIDE,
    FundusImage,
    ImageReadError,
)
from medig.io.discover import Unreadable, find_images, scan_inputs
from medig.io.jpeg import decode_jpeg_batch
from medig.io.read import decode_image_bytes, read_file_bytes, read_frames, read_image
from medig.io.sniff import sniff_bytes, sniff_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "FundusImage",
    "ImageReadError",
    "Unreadable",
    "decode_image_bytes",
    "decode_jpeg_batch",
    "find_images",
    "read_file_bytes",
    "read_frames",
    "read_image",
    "scan_inputs",
    "sniff_bytes",
    "sniff_file",
]
