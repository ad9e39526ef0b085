# SPDX-License-Identifier: Apache-2.0
"""Shared pixel conversions: any decoded array to RGB ``uint8`` with one documented rule.

The rule, applied the same way to rasters and DICOM so a cohort is mapped consistently:

* ``uint8`` samples are kept as they are.
* Samples with more than 8 bits are scaled by the file's *declared* maximum ``top``: ``2**b - 1``
  for a declared bit depth ``b`` (DICOM BitsStored, PNG sBIT, else the container depth, e.g. 16),
  or TIFF MaxSampleValue when present: ``out = round(min(v, top) * 255 / top)``. The image's own
  maximum is deliberately not used: a dark image must stay dark, and equal samples in two files
  of the same declared depth give equal pixels.
* Signed samples (DICOM PixelRepresentation 1) are shifted by ``2**(b-1)`` first, so the full
  signed range maps onto 0..255.
* Greyscale is replicated to three channels; a fourth (alpha) channel is dropped without
  compositing (fundus files use alpha for the field-of-view mask, the pixels under it are real).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["bits_top", "scale_to_uint8", "to_rgb_tensor"]

_CHUNK = 1 << 22  # samples converted at a time (32 MB of int64 work)


def bits_top(bits: int) -> int:
    """Largest sample value of a declared bit depth (1..32)."""
    return (1 << int(min(max(bits, 1), 32))) - 1


def scale_to_uint8(arr: np.ndarray, top: int, offset: int = 0) -> np.ndarray:
    """Map integer samples onto ``uint8``: ``round(clip(v + offset, 0, top) * 255 / top)``.

    ``top`` is the declared maximum sample value (``2**bits - 1`` for a declared bit depth) and
    ``offset`` shifts signed samples into the unsigned range (see module docstring).
    """
    if arr.dtype == np.uint8 and offset == 0 and top == 255:
        return arr
    if arr.dtype.kind not in "iub":
        raise TypeError(f"expected integer samples, got {arr.dtype}")
    top = max(int(top), 1)
    out = np.empty(arr.shape, dtype=np.uint8)
    src = arr.reshape(-1)
    dst = out.reshape(-1)
    # In chunks: an int64 copy of a 100-megapixel RGB frame alone would be 2.4 GB.
    for start in range(0, src.size, _CHUNK):
        work = src[start : start + _CHUNK].astype(np.int64)
        if offset:
            work += offset
        np.clip(work, 0, top, out=work)
        if top != 255:
            # Integer arithmetic: exact round-half-up of v * 255 / top, no float32 precision
            # loss at 32 bit.
            work = (work * 255 * 2 + top) // (2 * top)
        dst[start : start + _CHUNK] = work
    return out


def to_rgb_tensor(arr: np.ndarray) -> torch.Tensor:
    """``uint8`` array ``(H, W)`` or ``(H, W, C)`` with C in 1..4 to a ``(3, H, W)`` tensor."""
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 samples, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4:
        raise ValueError(f"unexpected sample layout {arr.shape}")
    channels = arr.shape[2]
    if channels <= 2:  # grey or grey + alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    else:
        arr = arr[:, :, :3]
    # A copy, never a view: Pillow hands out read-only buffers that torch must not alias.
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())
