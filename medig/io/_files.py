# SPDX-License-Identifier: Apache-2.0
"""Why a path is not read: one wording whether the problem is found while scanning folders or
when the file is opened."""
from __future__ import annotations

import errno
import os
import stat

__all__ = ["file_error_reason", "not_regular_reason"]

_KIND = (
    (stat.S_ISFIFO, "FIFO, a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this mode is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not an image file"
    for test, kind in _KIND:
        if test(mode):
            return f"not a regular file ({kind}): not read"
    return "not a regular file: not read"


def file_error_reason(path: str | os.PathLike, exc: OSError) -> str:
    """Why ``path`` could not be stat'ed or opened (``exc``), without quoting the path."""
    if exc.errno == errno.ENOENT:
        return ("broken symbolic link (its target does not exist)" if os.path.islink(path)
                else "no such file")
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link points back to itself)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot open file (permission denied)"
    return f"cannot open file ({exc.strerror or 'I/O error'})"
