# SPDX-License-Identifier: Apache-2.0
"""Batch JPEG decoding: nvJPEG on CUDA devices (one call for the whole batch), libjpeg on CPU.

Most fundus archives are JPEG, and on a GPU host decoding thousands of 3000x2000 photographs on
the CPU is the bottleneck of an audit; ``torchvision.io.decode_jpeg`` with a list input and a CUDA
device decodes the batch in one nvJPEG call. Headers are parsed first (Pillow reads only the
markers) for the decompression-bomb limit and the EXIF orientation, which nvJPEG ignores and is
therefore applied here with tensor flips/rotations on either device, matching
:func:`medig.io.read_image`. CMYK JPEGs, which nvJPEG does not convert, are decoded on the CPU.

The same refusals as :func:`medig.io.read_image` apply before any pixel is decoded: the size
limits of :func:`medig.io._image.shape_reason`, and scans cut short (:mod:`medig.io.codestream`),
which libjpeg would fill with grey and only warn about on the C ``stderr``; such warnings that
still get through ("Premature end of JPEG file") make the item an error as well.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import torch
from PIL import Image

from medig.io._image import ImageReadError, shape_reason, too_large_reason
from medig.io._quiet import captured_stderr, quiet, reports_truncation
from medig.io.codestream import CodestreamError, jpeg_info

__all__ = ["apply_exif_orientation", "decode_jpeg_batch", "libjpeg_reports_truncation",
           "refuse_truncated_stream"]

_ORIENTATION_TAG = 0x0112


def apply_exif_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn a ``(C, H, W)`` tensor as EXIF Orientation 1-8 says (same result as Pillow's
    ``ImageOps.exif_transpose``); other values leave it unchanged."""
    h, w = -2, -1
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h, w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:
        return image.transpose(h, w)
    if orientation == 6:
        return image.transpose(h, w).flip(w)
    if orientation == 7:
        return image.transpose(h, w).flip(h, w)
    if orientation == 8:
        return image.transpose(h, w).flip(h)
    return image


def _header(data: bytes, name: str) -> tuple[str, int]:
    """(Pillow mode, EXIF orientation) from the JPEG markers, refusing bad and oversized input."""
    if not data:
        raise ImageReadError(name, "empty JPEG data (0 bytes)")
    if not data.startswith(b"\xff\xd8\xff"):
        raise ImageReadError(name, "not JPEG data (no JPEG start-of-image marker)")
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            width, height = im.size
            mode = im.mode
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Image.DecompressionBombError:
        raise ImageReadError(name, too_large_reason(None)) from None
    except Exception:  # noqa: BLE001
        raise ImageReadError(name, "corrupt JPEG header (not decodable)") from None
    refused = shape_reason(width, height)
    if refused:
        raise ImageReadError(name, refused)
    refuse_truncated_stream(data, name)
    return mode, orientation


def refuse_truncated_stream(data: bytes, name: str) -> None:
    """Refuse a JPEG stream whose structure shows it cut short (:mod:`medig.io.codestream`);
    other structural problems are left to the decoder, which reads many slightly malformed
    camera files."""
    try:
        jpeg_info(data)
    except CodestreamError as error:
        if error.truncated:
            raise ImageReadError(name, error.reason) from None


#: libjpeg-turbo's warnings when a scan's data ends early.
_TRUNCATION_WARNINGS = ("premature end", "truncated")


def _warned_truncated(messages: list[str]) -> bool:
    return reports_truncation(messages, _TRUNCATION_WARNINGS)


def libjpeg_reports_truncation(data: bytes) -> bool:
    """Whether libjpeg-turbo (torchvision's CPU decoder) finds an 8-bit JPEG stream cut short.

    A scan whose data ends early, even with an end-of-image marker after it (a chunk cut out of
    the file), decodes "successfully" with the rest painted grey; libjpeg says so only in a
    warning that Pillow and pydicom's plugins swallow, so the readers ask libjpeg-turbo here before
    decoding. Other decoder complaints are left to the decoder that reads the pixels.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        with warnings.catch_warnings(), captured_stderr() as messages:
            warnings.simplefilter("ignore")
            decode_jpeg(tensor, mode=ImageReadMode.UNCHANGED)
    except Exception as error:  # noqa: BLE001
        return "truncated" in str(error).lower()
    return _warned_truncated(messages)


def _decode_cpu(data: torch.Tensor, name: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        with captured_stderr() as messages:
            image = decode_jpeg(data, mode=ImageReadMode.RGB)
    except Exception:  # noqa: BLE001
        raise ImageReadError(name, "corrupt or truncated JPEG data (decoding failed)") from None
    if _warned_truncated(messages):
        raise ImageReadError(name, "truncated JPEG data (the decoder reached the end early)")
    return image


def decode_jpeg_batch(
    datas: Sequence[bytes],
    device: str | torch.device = "cpu",
    *,
    names: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Decode a batch of JPEG files' bytes to RGB ``uint8`` tensors, on the GPU when given one.

    Parameters
    ----------
    datas : sequence of bytes
        The complete content of each JPEG file.
    device : str or torch.device
        ``"cuda"``/``"cuda:k"`` decodes with nvJPEG in one batched call and returns tensors on
        that device; anything else decodes with libjpeg-turbo on the CPU.
    names : sequence of str, optional
        How each item is named in errors (its file path); defaults to ``"<jpeg #i>"``.

    Returns
    -------
    list of torch.Tensor
        ``(3, H, W)`` ``uint8`` RGB tensors on ``device``, EXIF orientation applied, in input order.
        Pixels agree with :func:`medig.io.read_image` (Pillow) within JPEG decoder tolerance: IDCT
        and chroma upsampling differ slightly between libjpeg builds and nvJPEG.

    Raises
    ------
    ImageReadError
        For empty, non-JPEG, corrupt, truncated or oversized (> ``MAX_PIXELS``) data; names the item.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    items = list(datas)
    labels = list(names) if names is not None else [f"<jpeg #{i}>" for i in range(len(items))]
    if len(labels) != len(items):
        raise ValueError(f"got {len(labels)} names for {len(items)} JPEG items")
    if not items:
        return []
    with quiet():
        headers = [_header(bytes(d), n) for d, n in zip(items, labels)]
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in items]
    out: list[torch.Tensor | None] = [None] * len(items)
    on_gpu = [i for i, (mode, _) in enumerate(headers) if device.type == "cuda" and mode != "CMYK"]
    if on_gpu:
        try:
            with warnings.catch_warnings(), captured_stderr() as messages:
                warnings.simplefilter("ignore")  # torchvision's decode_jpeg deprecation notice
                decoded = decode_jpeg(
                    [tensors[i] for i in on_gpu], mode=ImageReadMode.RGB, device=device
                )
            if _warned_truncated(messages):
                raise RuntimeError("truncated")
        except Exception:  # noqa: BLE001
            # nvJPEG fails the whole batch: find (and name) the bad item with the CPU decoder.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i in on_gpu:
                    _decode_cpu(tensors[i], labels[i])
            raise ImageReadError(labels[on_gpu[0]], "nvJPEG could not decode this batch") from None
        for i, image in zip(on_gpu, decoded):
            out[i] = image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = [img if img is not None else _decode_cpu(tensors[i], labels[i]).to(device)
                  for i, img in enumerate(out)]
    return [apply_exif_orientation(img, orient) for img, (_, orient) in zip(images, headers)]
