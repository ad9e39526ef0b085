# SPDX-License-Identifier: Apache-2.0
"""The image inputs the preprocessing functions accept, validated once, with one wording."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["image_list"]


def image_list(images: Tensor | Sequence[Tensor]) -> tuple[list[Tensor], torch.device]:
    """Validate a batch (N, 3, H, W) or list of (3, H, W) / (1, H, W) images of any sizes; return
    it as a list of (3, H, W) tensors (grey expanded) and their common device."""
    if isinstance(images, Tensor):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"expected (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
        items = list(images.unbind(0))
    else:
        items = list(images)
    if not items:
        raise ValueError("no images given")
    device = items[0].device
    out = []
    for k, t in enumerate(items):
        if not isinstance(t, Tensor) or t.ndim != 3 or t.shape[0] not in (1, 3):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"image {k}: expected a (3, H, W) tensor, got {shape}")
        if t.device != device:
            raise ValueError(f"image {k} is on {t.device}, image 0 on {device}: use one device")
        if t.dtype != torch.uint8 and not t.is_floating_point():
            raise ValueError(f"image {k}: dtype must be uint8 or float in [0, 1], got {t.dtype}")
        out.append(t.expand(3, -1, -1) if t.shape[0] == 1 else t)
    return out, device
