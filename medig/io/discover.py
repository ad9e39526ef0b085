# SPDX-License-Identifier: Apache-2.0
"""Find the candidate image files under a set of files and folders, and what could not be read.

Nothing found in a folder is silently dropped if it looks like it was meant to be an image: a
broken symbolic link or a link loop named like an image, a FIFO, socket or device, a folder named
like an image file that holds no image, and a folder that cannot be listed are returned by
:func:`scan_inputs` as :class:`Unreadable` entries with a reason, so an audit gives them an error
row. No file is opened to find out: only ``stat`` is used on anything that is not a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from medig.io._files import file_error_reason, not_regular_reason
from medig.io._image import IMAGE_EXTENSIONS, ImageReadError
from medig.io.sniff import SUPPORTED_FORMATS, sniff_file

__all__ = ["Unreadable", "find_images", "scan_inputs"]


@dataclass(frozen=True)
class Unreadable:
    """An entry that is not read, and why (one line, names no patient data)."""

    path: Path
    reason: str
    is_folder: bool = False


def _has_image_extension(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_candidate(path: Path) -> bool:
    """Image extension (even with bad content, so it gets reported) or supported content."""
    if _has_image_extension(path.name):
        return True
    try:
        return sniff_file(path) in SUPPORTED_FORMATS
    except OSError:  # unreadable without an image extension: not ours to report
        return False


def _classify(path: Path, found: set[Path], problems: list[Unreadable]) -> None:
    """Sort one non-directory entry of a folder into ``found`` or ``problems`` (or neither)."""
    try:
        mode = os.stat(path).st_mode  # follows links; never opens
    except OSError as exc:
        if _has_image_extension(path.name):
            problems.append(Unreadable(path, file_error_reason(path, exc)))
        return
    if stat.S_ISREG(mode):
        if _is_candidate(path):
            found.add(path)
    elif not stat.S_ISDIR(mode):
        problems.append(Unreadable(path, str(not_regular_reason(mode))))


def _walk(root: Path, found: set[Path], problems: list[Unreadable]) -> None:
    def unlistable(exc: OSError) -> None:
        folder = Path(exc.filename) if exc.filename else root
        reason = "folder cannot be listed (permission denied)" \
            if exc.errno in (errno.EACCES, errno.EPERM) \
            else f"folder cannot be listed ({exc.strerror or 'I/O error'})"
        problems.append(Unreadable(folder, reason, is_folder=True))

    image_named_dirs: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        # Pruning in place stops os.walk from descending into hidden folders (.git, .cache).
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            if _has_image_extension(d):
                image_named_dirs.append(Path(dirpath) / d)
        for name in sorted(filenames):
            if not name.startswith("."):
                _classify(Path(dirpath) / name, found, problems)
    for folder in image_named_dirs:
        if folder.is_symlink():
            continue  # symlinked folders are not followed
        inside = any(folder in p.parents for p in found)
        if not inside:
            problems.append(Unreadable(folder, "is a directory, not an image file", True))


def scan_inputs(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
) -> tuple[list[Path], list[Unreadable]]:
    """Candidate image files among ``inputs``, and the entries that cannot be read.

    Parameters
    ----------
    inputs : path or iterable of paths
        Files and folders, as for :func:`find_images`.

    Returns
    -------
    (list of Path, list of Unreadable)
        The candidates, sorted and without duplicates; and, sorted by path: folders that cannot
        be listed; entries that are not regular files (FIFO, socket, device); broken symbolic
        links and link loops named like images (``.jpg .jpeg .png .tif .tiff .dcm .dicom``);
        folders named like images that hold no candidate. Such entries given by name are
        reported whatever their name.

    Raises
    ------
    ImageReadError
        If an input does not exist at all (not even as a broken link).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: set[Path] = set()
    problems: list[Unreadable] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            _walk(path, found, problems)
            continue
        if not os.path.lexists(path):
            raise ImageReadError(os.fsdecode(os.fspath(item)), "no such file or directory")
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            problems.append(Unreadable(path, file_error_reason(path, exc)))
            continue
        if stat.S_ISREG(mode):
            found.add(path)  # kept whatever its content, so the reader reports a bad file
        else:
            problems.append(Unreadable(path, str(not_regular_reason(mode))))
    unique = {p.path: p for p in problems}
    return (sorted(found, key=lambda p: p.as_posix()),
            sorted(unique.values(), key=lambda p: p.path.as_posix()))


def find_images(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Candidate image files among ``inputs``, sorted and without duplicates.

    Parameters
    ----------
    inputs : path or iterable of paths
        Files (regular files are kept as given, whatever their content, so that a bad file named
        explicitly is reported by the reader) and folders (searched recursively; hidden files and
        folders, whose name starts with ``"."``, are skipped; symlinked folders are not followed,
        which rules out cycles).

    Returns
    -------
    list of pathlib.Path
        Sorted by path. Inside folders a file is a candidate if its extension is an image/DICOM
        extension (``.jpg .jpeg .png .tif .tiff .dcm .dicom``, any case) or its content sniffs as
        JPEG, PNG, TIFF or DICOM (so extension-less DICOM files are found). Entries that cannot
        be read (FIFOs, devices, broken links, unlistable folders) are left out: see
        :func:`scan_inputs`, which reports them.

    Raises
    ------
    ImageReadError
        If an input does not exist.
    """
    return scan_inputs(inputs)[0]
