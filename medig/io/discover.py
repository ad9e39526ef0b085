# SPDX-License-Identifier: Apache-2.0
"""Find the candidate image files under a set of files and folders."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from medig.io._image import IMAGE_EXTENSIONS, ImageReadError
from medig.io.sniff import SUPPORTED_FORMATS, sniff_file

__all__ = ["find_images"]


def _is_candidate(path: Path) -> bool:
    """Image extension (even with bad content, so it gets reported) or supported content."""
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    try:
        return sniff_file(path) in SUPPORTED_FORMATS
    except OSError:  # unreadable without an image extension: not ours to report
        return False


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into hidden folders (.git, .cache).
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                path = Path(dirpath) / name
                if path.is_file() and _is_candidate(path):
                    yield path


def find_images(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Candidate image files among ``inputs``, sorted and without duplicates.

    Parameters
    ----------
    inputs : path or iterable of paths
        Files (kept as given, whatever their content, so that a bad file named explicitly is
        reported by the reader) and folders (searched recursively; hidden files and folders,
        whose name starts with ``"."``, are skipped; symlinked folders are not followed, which
        rules out cycles).

    Returns
    -------
    list of pathlib.Path
        Sorted by path. Inside folders a file is a candidate if its extension is an image/DICOM
        extension (``.jpg .jpeg .png .tif .tiff .dcm .dicom``, any case) or its content sniffs as
        JPEG, PNG, TIFF or DICOM (so extension-less DICOM files are found).

    Raises
    ------
    ImageReadError
        If an input does not exist.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.update(_walk(path))
        elif path.exists():
            found.add(path)
        else:
            raise ImageReadError(str(item), "no such file or directory")
    return sorted(found, key=lambda p: p.as_posix())
