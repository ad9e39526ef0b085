# SPDX-License-Identifier: Apache-2.0
"""What an audit reads: the input files, their lesion masks, and a DataLoader that decodes them.

Decoding runs in DataLoader worker processes so that it overlaps the model work in the main
process; preprocessing then runs batched on the audit's device (see :mod:`medig.audit.pipeline`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from medig.io import ImageReadError, find_images, read_frames, sniff_file

__all__ = ["AuditInput", "DecodedInput", "MASKS_FOLDER", "collect_inputs", "make_loader"]

#: A subfolder of this name inside an input folder holds lesion masks, not photographs.
MASKS_FOLDER = "masks"
_MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


@dataclass(frozen=True)
class AuditInput:
    """One input file: where it is, how results name it, and its lesion mask folder if any."""

    path: Path
    rel: str  # POSIX path relative to the input folder; how every output names the file
    size: int
    masks_dir: Path | None = None


@dataclass
class DecodedInput:
    """What a worker hands back: the frames of one file (or why it failed) and its masks."""

    index: int
    frames: list[torch.Tensor]
    metadata: list[dict[str, Any]]
    masks: list[torch.Tensor | None]
    error: str | None = None
    jpeg: bytes | None = None  # undecoded JPEG, when it is decoded on the audit's device


def _is_within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def collect_inputs(inputs: Sequence[str | os.PathLike], masks_dir: str | os.PathLike | None = None,
                   exclude: Sequence[str | os.PathLike] = ()) -> list[AuditInput]:
    """The files to audit, in a deterministic order.

    Folders are searched recursively. A ``masks/`` subfolder directly inside an input folder is
    taken as that folder's lesion masks (unless ``masks_dir`` is given) and not audited; folders in
    ``exclude`` (the output folder) are skipped. Paths are named relative to their input folder,
    prefixed by the folder's name when several folders are given.

    Raises
    ------
    ImageReadError
        If an input does not exist.
    """
    explicit_masks = Path(masks_dir) if masks_dir else None
    skip = [Path(p) for p in exclude]
    if explicit_masks is not None:
        skip.append(explicit_masks)
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    found: dict[str, AuditInput] = {}
    for raw in inputs:
        root = Path(raw)
        auto_masks = root / MASKS_FOLDER if root.is_dir() and (root / MASKS_FOLDER).is_dir() else None
        masks = explicit_masks or auto_masks
        for path in find_images([root]):
            if any(_is_within(path, s) for s in skip) or _is_within(path, auto_masks):
                continue
            if root.is_dir():
                rel = path.relative_to(root).as_posix()
                if len(folders) > 1:
                    rel = f"{root.resolve().name}/{rel}"
            else:
                rel = path.name
            found.setdefault(rel, AuditInput(path, rel, path.stat().st_size, masks))
    return [found[k] for k in sorted(found)]


def _mask_file(item: AuditInput, frame: int | None) -> Path | None:
    if item.masks_dir is None:
        return None
    rel = Path(item.rel)
    stems = [f"{rel.stem}_frame{frame}", rel.stem] if frame is not None else [rel.stem]
    for folder in (item.masks_dir / rel.parent, item.masks_dir):
        for stem in stems:
            for suffix in _MASK_SUFFIXES:
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def _read_mask(path: Path, shape: tuple[int, int] | None) -> torch.Tensor | None:
    """Lesion mask as bool ``(1, H, W)``; None (no localisation) if unreadable or of another size
    (``shape`` None: not checked here)."""
    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 0
    except (OSError, ValueError):
        return None
    if shape is not None and mask.shape != shape:
        return None
    return torch.from_numpy(mask.copy())[None]


class _DecodeDataset(Dataset):
    def __init__(self, items: Sequence[AuditInput], include_phi: bool,
                 jpeg_as_bytes: bool) -> None:
        self.items = list(items)
        self.include_phi = include_phi
        self.jpeg_as_bytes = jpeg_as_bytes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> DecodedInput:
        item = self.items[index]
        if self.jpeg_as_bytes and sniff_file(item.path) == "jpeg":
            mask_path = _mask_file(item, None)
            return DecodedInput(index, [], [], [_read_mask(mask_path, None) if mask_path else None],
                                jpeg=item.path.read_bytes())
        try:
            images = read_frames(item.path, include_phi=self.include_phi)
        except ImageReadError as error:
            return DecodedInput(index, [], [], [], error=error.reason)
        multi = len(images) > 1
        masks = []
        for k, image in enumerate(images):
            mask_path = _mask_file(item, k if multi else None)
            masks.append(_read_mask(mask_path, tuple(image.pixels.shape[-2:]))
                         if mask_path else None)
        return DecodedInput(index, [im.pixels for im in images], [im.metadata for im in images],
                            masks)


def _collate(batch: list[DecodedInput]) -> list[DecodedInput]:
    return batch


def make_loader(items: Sequence[AuditInput], batches: Sequence[Sequence[int]], workers: int,
                include_phi: bool = False, jpeg_as_bytes: bool = False) -> DataLoader:
    """A DataLoader that decodes the given batches of ``items`` (indices) in ``workers`` processes.

    Each :class:`DecodedInput`'s ``index`` is the item's index in ``items``. With
    ``jpeg_as_bytes`` JPEG files come back undecoded, for nvJPEG on the GPU.
    """
    return DataLoader(
        _DecodeDataset(items, include_phi, jpeg_as_bytes), batch_sampler=[list(b) for b in batches],
        num_workers=workers, collate_fn=_collate, persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )
