# SPDX-License-Identifier: Apache-2.0
"""Small file helpers shared by the whole package: atomic writes, reading back what was written,
and file hashing."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["MAX_STATE_BYTES", "NAME_MAX", "OPEN_FLAGS", "NotRegularFileError", "atomic_path",
           "atomic_write", "open_regular", "read_json_file", "remove_stale_temporaries",
           "sha256_file"]

#: Longest file name (one path component) in bytes on the file systems medig writes to. 255 is
#: the limit of ext4, XFS, Btrfs, APFS and NTFS (in UTF-16 units there); temporary names are kept
#: within it whatever the target's name.
NAME_MAX = 255

# Temporary files of atomic_path: "." + (a prefix of) the target's name + "." + 8 random
# characters (tempfile's alphabet) + ".tmp"; only names of this form are ever cleaned up.
_TMP_SUFFIX = ".tmp"
_TMP_RANDOM = 8
_TMP_NAME = re.compile(r"^\..*\.[a-z0-9_]{%d}\.tmp$" % _TMP_RANDOM)
_TMP_HEAD_BYTES = NAME_MAX - 1 - 1 - _TMP_RANDOM - len(_TMP_SUFFIX) - 8  # 8 bytes of margin


def _temporary_prefix(name: str) -> str:
    """``.<name>.``, with ``name`` cut (at a character boundary) so the temporary name fits in
    :data:`NAME_MAX` bytes: a 238-byte target name must not make its temporary name too long."""
    raw = os.fsencode(name)
    if len(raw) > _TMP_HEAD_BYTES:
        raw = raw[:_TMP_HEAD_BYTES]
        # Drop a UTF-8 sequence cut in the middle (continuation bytes are 10xxxxxx).
        while raw and raw[-1] & 0xC0 == 0x80:
            raw = raw[:-1]
        if raw and raw[-1] >= 0xC0:
            raw = raw[:-1]
    return f".{os.fsdecode(raw)}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces ``path`` only on success.

    A crash (even ``kill -9``) leaves either the old file or the new one, never a truncated file:
    the temporary file lives in the same directory, so ``os.replace`` is an atomic rename. The
    temporary name (``.<name>.<random>.tmp``, the name shortened when needed) never exceeds
    :data:`NAME_MAX`; one left behind by a killed process is removed by
    :func:`remove_stale_temporaries`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.name),
                               suffix=_TMP_SUFFIX)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file 0600; outputs get the usual permissions (0666 less the umask).
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Text is written as UTF-8. A name that is not UTF-8 (a surrogate escape from
    :func:`os.fsdecode`) quoted in it is written as ``\udcff``, which JSON reads back as the same
    name, instead of failing the write.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8", "backslashreplace") if isinstance(data, str)
                        else data)
    return Path(path)


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = True,
                             older_than_s: float = 0.0) -> int:
    """Delete temporary files that :func:`atomic_path` left behind (a process killed mid-write).

    Only regular files whose name has ``atomic_path``'s form (``.<name>.<8 random>.tmp``) are
    removed, and only those last modified at least ``older_than_s`` seconds ago. Call it while no
    other process writes into ``folder`` (the audit holds its output lock). Symbolic links to
    folders are not followed. Returns the number of files removed.
    """
    removed = 0
    now = time.time()
    root = Path(folder)
    if not root.is_dir():
        return 0
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, _dirnames, filenames in walker:
        for name in filenames:
            if not _TMP_NAME.match(name):
                continue
            path = Path(dirpath) / name
            try:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= older_than_s:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


#: Flags of every open of an input: a FIFO opened by mistake must not block, a tty not become ours.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFileError(OSError):
    """A FIFO, socket, device or directory where a regular file was expected (never opened or
    read: a FIFO would block, ``/dev/zero`` would never end)."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading in binary mode, if it is a regular file.

    Checked before opening and again on the open descriptor (the path may have been replaced in
    between). Raises :class:`NotRegularFileError` otherwise, ``OSError`` if it cannot be opened.
    """
    name = os.fsdecode(os.fspath(path))
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotRegularFileError(f"not a regular file: {name}")
    fh = os.fdopen(os.open(path, OPEN_FLAGS), "rb")
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise NotRegularFileError(f"not a regular file: {name}")
    return fh


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so large DICOMs do not fill memory.

    Raises ``OSError`` for anything that is not a regular file, without reading it
    (:func:`open_regular`).
    """
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


#: Largest JSON file :func:`read_json_file` reads (a work record of a many-frame DICOM is a few MB).
MAX_STATE_BYTES = 256 << 20


def read_json_file(path: str | os.PathLike, max_bytes: int = MAX_STATE_BYTES) -> Any:
    """The parsed JSON of a file medig wrote earlier (work records, manifests, stamps).

    Raises
    ------
    FileNotFoundError
        There is no such file (or a broken link).
    ValueError
        Why it cannot be used, in a few words: not a regular file (a FIFO is never opened, so
        nothing blocks), unreadable, larger than ``max_bytes``, not UTF-8 or not JSON.
    """
    try:
        with open_regular(path) as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ValueError(f"unreadable ({error.strerror or 'not a regular file'})") from None
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not JSON in UTF-8 ({type(error).__name__})") from None
