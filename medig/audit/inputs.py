# SPDX-License-Identifier: Apache-2.0
"""What an audit reads: the input files, their lesion masks, and a DataLoader that decodes them.

Decoding runs in DataLoader worker processes so that it overlaps the model work in the main
process; preprocessing then runs batched on the audit's device (see :mod:`medig.audit.pipeline`).

Each worker reads a file's bytes **once**, hashes them and decodes those same bytes, so the hash
stored with the results is the hash of what was decoded even if the file changes during the run.
A read that fails for a file-system reason (missing, permission, not a regular file) is marked
``retry``: the next run tries again, as only errors that depend on the content are final. The
frames of a multi-frame file travel back as one ``(F, 3, H, W)`` tensor (one shared-memory
handle, not one per frame). :func:`decode_batches` turns a worker that dies or hangs into error
rows for its files and carries on with a fresh loader.

A worker moves what it decoded into shared memory itself, where a failure (``/dev/shm`` full, as
with Docker's 64 MiB default, or a file-size limit such as ``ulimit -f``) comes back as a result:
left to the result queue's feeder thread, it would only print a traceback and drop the result,
and the audit would wait out the hang timeout. The files concerned, and every later one, are then
decoded in the audit's own process, with one warning line: the shared memory is a property of the
machine, so the next batches would fail the same way.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, get_worker_info

from medig.audit.store import record_key
from medig.io import (
    ImageReadError,
    decode_image_bytes,
    read_file_bytes,
    scan_inputs,
    sniff_bytes,
)
from medig.io.sniff import HEADER_BYTES

__all__ = [
    "DECODE_TIMEOUT_S",
    "MASKS_FOLDER",
    "AuditInput",
    "DecodedInput",
    "adopt_hashes",
    "collect_inputs",
    "decode_batches",
    "make_loader",
]

#: Seconds a decoding worker may spend per file of a batch before it is taken as hung: its
#: files get an error row (retried by the next run) and the audit goes on with a fresh worker.
#: Far above any real decode (a 100-megapixel file takes seconds), it only catches true hangs.
DECODE_TIMEOUT_S: float = 300.0
_POLL_S = 5.0  # how often a waiting audit checks that its decoding workers are alive
_log = logging.getLogger("medig")

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
    error: str | None = None  # found but not readable (a FIFO, a broken link, ...): an error row


@dataclass
class DecodedInput:
    """What a worker hands back: the frames of one file (or why it failed) and its masks."""

    index: int
    frames: torch.Tensor | list[torch.Tensor]  # (F, 3, H, W) uint8, or a list of (3, H, W)
    metadata: list[dict[str, Any]]
    masks: list[torch.Tensor | None]
    error: str | None = None
    jpeg: bytes | None = None  # undecoded JPEG, when it is decoded on the audit's device
    sha256: str | None = None  # of the bytes decoded; None when they could not be read
    retry: bool = False  # the error is not about the content: the next run tries again
    share_error: str | None = None  # the worker could not share its tensors (decode it here)


def _is_within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    # realpath, unlike Path.resolve, does not raise on a symbolic link loop.
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def collect_inputs(inputs: Sequence[str | os.PathLike], masks_dir: str | os.PathLike | None = None,
                   exclude: Sequence[str | os.PathLike] = ()) -> list[AuditInput]:
    """The files to audit, in a deterministic order.

    Folders are searched recursively. A ``masks/`` subfolder directly inside an input folder is
    taken as that folder's lesion masks (unless ``masks_dir`` is given) and not audited; folders in
    ``exclude`` (the output folder) are skipped. Paths are named relative to their input folder,
    prefixed by the folder's name when several folders are given. Entries that cannot be read
    (see :func:`medig.io.scan_inputs`: FIFOs, devices, broken links, unlistable folders, ...)
    are inputs too, with ``error`` set, so each gets an error row; a folder's ``rel`` ends in
    ``/``.

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
        images, problems = scan_inputs([root])
        entries: list[tuple[Path, str | None, bool]] = [(p, None, False) for p in images]
        entries += [(u.path, u.reason, u.is_folder) for u in problems]
        for path, error, is_folder in entries:
            if any(_is_within(path, s) for s in skip) or _is_within(path, auto_masks):
                continue
            if root.is_dir():
                rel = path.relative_to(root).as_posix()
                if rel == ".":
                    rel = root.resolve().name
                elif len(folders) > 1:
                    rel = f"{root.resolve().name}/{rel}"
            else:
                rel = path.name
            if is_folder:
                rel += "/"
            try:
                size = path.stat().st_size if error is None else 0
            except OSError:  # vanished since it was found: the reader says so (and retries)
                size = 0
            found.setdefault(rel, AuditInput(path, rel, size, masks, error))
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


def _read_mask(path: Path, shape: tuple[int, ...] | None) -> torch.Tensor | None:
    """Lesion mask as bool ``(1, H, W)``; None (no localisation) if unreadable or of another size
    than ``shape``, ``(height, width)`` (None: not checked here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                mask = np.asarray(im.convert("L")) > 0
    except Exception:  # noqa: BLE001 - any unreadable mask (even a decompression bomb): none
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
        try:
            decoded = self._decode(index)
        except Exception as error:  # noqa: BLE001 - a bug or resource error: one row, not a crash
            return DecodedInput(index, [], [], [], retry=True,
                                error=f"could not be decoded: {type(error).__name__}")
        if get_worker_info() is None:  # decoded in the audit's process: nothing to share
            return decoded
        try:
            _share_tensors(decoded)
        except (RuntimeError, OSError) as error:
            reason = _share_failure(error)
            return DecodedInput(index, [], [], [], retry=True, share_error=reason,
                                error=f"could not be shared by its decoding worker ({reason})")
        return decoded

    def _decode(self, index: int) -> DecodedInput:
        item = self.items[index]
        if item.error is not None:
            return DecodedInput(index, [], [], [], error=item.error, retry=True)
        try:
            data = read_file_bytes(item.path)
        except ImageReadError as error:  # the file system, not the content: retried next run
            return DecodedInput(index, [], [], [], error=error.reason, retry=True)
        sha = hashlib.sha256(data).hexdigest()
        if self.jpeg_as_bytes and sniff_bytes(data[:HEADER_BYTES]) == "jpeg":
            mask_path = _mask_file(item, None)
            return DecodedInput(index, [], [], [_read_mask(mask_path, None) if mask_path else None],
                                jpeg=data, sha256=sha)
        try:
            images = decode_image_bytes(data, item.path, include_phi=self.include_phi)
        except ImageReadError as error:  # about these bytes: final, like the bytes themselves
            return DecodedInput(index, [], [], [], error=error.reason, sha256=sha)
        del data
        multi = len(images) > 1
        masks = []
        for k, image in enumerate(images):
            mask_path = _mask_file(item, k if multi else None)
            masks.append(_read_mask(mask_path, tuple(image.pixels.shape[-2:]))
                         if mask_path else None)
        # One tensor for all frames: one shared-memory handle to pass back, however many frames
        # (a single frame is viewed, not copied).
        frames = (images[0].pixels.unsqueeze(0) if len(images) == 1
                  else torch.stack([im.pixels for im in images]))
        return DecodedInput(index, frames, [im.metadata for im in images], masks, sha256=sha)


def _share_tensors(decoded: DecodedInput) -> None:
    """Move ``decoded``'s frames and masks into shared memory, as sending them to the audit's
    process would (it is then a no-op there), so that a failure raises here.

    Raises
    ------
    RuntimeError
        If the shared memory cannot be created or sized (``/dev/shm`` full, a file-size limit).
    """
    frames = decoded.frames if isinstance(decoded.frames, list) else [decoded.frames]
    for tensor in [*frames, *decoded.masks]:
        if tensor is not None:
            tensor.share_memory_()


def _share_failure(error: BaseException) -> str:
    """The operating system's words from a failed share, without the segment's name: torch says
    e.g. "unable to resize file </torch_1_2_0> to the right size: File too large (27)"."""
    text = str(error).strip()
    found = re.search(r":\s*([^:<>]+?)\s*\(\d+\)\s*$", text)
    if found:
        return found.group(1)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def adopt_hashes(batch: Sequence[DecodedInput], shas: dict[int, str], keys: dict[int, str],
                 settings_key: str) -> None:
    """Key each input's work by the hash of the bytes its worker decoded.

    The audit hashes every file before decoding (to find finished work); a file replaced in
    between is stored under the hash of what was decoded, never under the first content's hash.
    """

    for d in batch:
        if d.sha256 is not None and d.sha256 != shas.get(d.index):
            shas[d.index] = d.sha256
            keys[d.index] = record_key(d.sha256, settings_key)


def _collate(batch: list[DecodedInput]) -> list[DecodedInput]:
    return batch


def make_loader(items: Sequence[AuditInput], batches: Sequence[Sequence[int]], workers: int,
                include_phi: bool = False, jpeg_as_bytes: bool = False,
                timeout_s: float = 0.0) -> DataLoader:
    """A DataLoader that decodes the given batches of ``items`` (indices) in ``workers`` processes.

    Each :class:`DecodedInput`'s ``index`` is the item's index in ``items``. With
    ``jpeg_as_bytes`` JPEG files come back undecoded, for nvJPEG on the GPU. ``timeout_s`` (with
    workers) makes waiting for a batch raise instead of hanging; :func:`decode_batches` uses it.
    """
    return DataLoader(
        _DecodeDataset(items, include_phi, jpeg_as_bytes), batch_sampler=[list(b) for b in batches],
        num_workers=workers, collate_fn=_collate, persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None, timeout=timeout_s if workers > 0 else 0.0,
    )


def _shutdown(iterator: object, failed: bool = False) -> None:
    """Stop a DataLoader iterator's workers now, not at garbage collection; after a failure the
    workers are terminated first (a hung one would otherwise be waited for)."""
    if failed:
        for worker in getattr(iterator, "_workers", ()):
            try:
                if worker.is_alive():
                    worker.terminate()
            except Exception:  # noqa: BLE001, S110 - best effort
                pass
    stop = getattr(iterator, "_shutdown_workers", None)
    if stop is not None:
        try:
            stop()
        except Exception:  # noqa: BLE001, S110 - best effort: the workers are daemons anyway
            pass


def _failure_reason(error: BaseException, timeout_s: float) -> str:
    if "timed out" in str(error).lower():
        return f"decoding took longer than {timeout_s:g} s (the decoder hung; retried next run)"
    return "the decoding process died (crashed or killed, e.g. out of memory; retried next run)"


def _isolated(items: Sequence[AuditInput], indices: Sequence[int], include_phi: bool,
              jpeg_as_bytes: bool, timeout_s: float) -> list[DecodedInput]:
    """Decode each of ``indices`` alone in a fresh worker: the one that kills or hangs its worker
    becomes an error row, the others decode normally."""
    out = []
    for i in indices:
        iterator = iter(make_loader(items, [[i]], 1, include_phi, jpeg_as_bytes,
                                    min(_POLL_S, timeout_s)))
        failed = False
        try:
            out.extend(_next_within(iterator, timeout_s))
        except Exception as error:  # noqa: BLE001 - the worker died or hung on this file
            failed = True
            out.append(DecodedInput(i, [], [], [], error=_failure_reason(error, timeout_s),
                                    retry=True))
        finally:
            _shutdown(iterator, failed)
    return out


def _warn_share_failure(reason: str) -> None:
    _log.warning("decoding workers cannot share decoded images through /dev/shm (%s); decoding "
                 "in this process from now on (slower): use --workers 0, or a larger /dev/shm "
                 "(e.g. docker run --shm-size=1g)", reason)


def _synchronous_worker_errors() -> None:
    """Keep a dead worker from raising inside whatever the main thread is doing.

    PyTorch installs a SIGCHLD handler that raises ``RuntimeError`` asynchronously, anywhere in
    the main thread (in the middle of an explanation or a progress-bar update), when a worker
    dies. Without it, the death is noticed where :func:`decode_batches` waits for a batch, which
    turns it into error rows. Best effort: a private flag of ``torch.utils.data``.
    """
    try:
        from torch.utils.data._utils import signal_handling
    except ImportError:  # pragma: no cover
        return
    if hasattr(signal_handling, "_SIGCHLD_handler_set"):
        signal_handling._SIGCHLD_handler_set = True


def _next_within(iterator: Iterator[list[DecodedInput]], budget_s: float) -> list[DecodedInput]:
    """The next batch; polls so a dead worker is noticed within :data:`_POLL_S`, and re-raises the
    DataLoader's "timed out" ``RuntimeError`` once ``budget_s`` is spent (it raises on every poll
    interval without changing the iterator's state, so waiting again is safe)."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            return next(iterator)
        except RuntimeError as error:
            if "timed out" not in str(error) or time.monotonic() >= deadline:
                raise
            # not yet over budget: keep waiting for this batch


def decode_batches(items: Sequence[AuditInput], batches: Sequence[Sequence[int]], workers: int,
                   include_phi: bool = False, jpeg_as_bytes: bool = False,
                   timeout_s: float | None = None) -> Iterator[list[DecodedInput]]:
    """The decoded batches, in order, whatever happens to the decoding workers.

    With ``workers > 0`` a batch whose worker dies (a decoder crash, the out-of-memory killer) or
    takes longer than ``timeout_s`` per file (default :data:`DECODE_TIMEOUT_S`) is decoded again
    file by file, each in a fresh worker; a file that still kills or hangs its worker gets an error
    row (``retry``), and the remaining batches continue with a fresh DataLoader. The audit never
    waits forever on a worker. A worker that cannot share what it decoded (``/dev/shm`` full, a
    file-size limit) reports it at once: those files and all later ones are decoded in this
    process instead, with one warning. With ``workers == 0`` files decode in this process, bounded
    by the reader's limits (:data:`medig.io.MAX_PIXELS`, :data:`medig.io.MAX_FRAMES`, ...).
    """
    timeout = DECODE_TIMEOUT_S if timeout_s is None else float(timeout_s)
    batches = [list(b) for b in batches if b]
    here = _DecodeDataset(items, include_phi, jpeg_as_bytes)  # decodes in this process

    def settle(batch: list[DecodedInput]) -> list[DecodedInput]:
        """The batch, with what its worker could not share decoded here; stops the workers."""
        nonlocal workers
        failed = [d.share_error for d in batch if d.share_error is not None]
        if not failed:
            return batch
        if workers > 0:
            _warn_share_failure(failed[0])
            workers = 0
        return [here[d.index] if d.share_error is not None else d for d in batch]

    pos = 0
    while pos < len(batches):
        if workers <= 0:
            yield [here[i] for i in batches[pos]]
            pos += 1
            continue
        _synchronous_worker_errors()
        iterator = iter(make_loader(items, batches[pos:], workers, include_phi, jpeg_as_bytes,
                                    min(_POLL_S, timeout)))
        failed = False
        settled: list[DecodedInput] | None = None
        try:
            while pos < len(batches):
                try:
                    batch = _next_within(iterator, timeout * len(batches[pos]))
                except StopIteration:
                    return
                except Exception:  # noqa: BLE001 - a worker died or hung (decoding never raises)
                    failed = True
                    break
                pos += 1
                if any(d.share_error is not None for d in batch):
                    settled = batch  # decoded here once the workers are stopped
                    break
                yield batch
        finally:
            _shutdown(iterator, failed)
        if settled is not None:
            yield settle(settled)
        elif failed:
            yield settle(_isolated(items, batches[pos], include_phi, jpeg_as_bytes, timeout))
            pos += 1
