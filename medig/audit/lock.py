# SPDX-License-Identifier: Apache-2.0
"""One audit at a time per output folder: an exclusive lock on ``<out>/.medig/lock``.

Two audits writing into one ``--out`` would each do all the work and race on every output file.
The first audit takes an exclusive ``fcntl.flock`` on ``<out>/.medig/lock`` and holds it until it
ends; a second one **refuses at once** with :class:`OutputLockedError` (``medig audit`` exits 1)
naming the process that holds the folder, instead of waiting an unknown time. The operating
system releases the lock when its holder dies, even by ``kill -9``, so a crashed audit never
blocks the next one; the lock file itself stays (it only records who holds it).

Under ``torchrun`` the ranks of one job share the folder: rank 0 takes the lock before any rank
writes and holds it for the job, and tells the other ranks whether it got it (see
:func:`medig.audit.pipeline.run_audit`).

Taking the lock is also the first write into ``--out``, so an output folder that is a file, sits
under a file or is not writable is reported here, as one line, before any work starts.
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import socket
from pathlib import Path

from medig.audit.errors import AuditError

__all__ = ["OutputLock", "OutputLockedError", "lock_path"]


class OutputLockedError(AuditError):
    """Another audit holds the output folder."""


def lock_path(out_dir: str | os.PathLike) -> Path:
    """The lock file of an output folder."""
    return Path(out_dir) / ".medig" / "lock"


def _folder_error(out: Path, exc: OSError) -> AuditError:
    """One line saying why ``--out`` cannot be used, from the error creating or opening in it."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"is under a file ({parent})"
            return AuditError(f"--out {out} {where}, not a folder")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AuditError(f"--out {out} is not writable ({exc.strerror})")
    return AuditError(f"--out {out} cannot be used ({exc.strerror or type(exc).__name__})")


class OutputLock:
    """An exclusive, non-blocking lock on an output folder (context manager).

    Parameters
    ----------
    out_dir : path
        The output folder; it and ``.medig/`` are created if needed.

    Raises
    ------
    OutputLockedError
        On :meth:`acquire`, when another process holds the folder.
    AuditError
        When the folder cannot be created or written (a file, under a file, read-only).
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out = Path(out_dir)
        self.path = lock_path(out_dir)
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise _folder_error(self.out, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(
                    f"--out {self.out} is in use by another medig audit{holder}; wait for it to "
                    "finish or choose another --out folder") from None
            raise AuditError(f"--out {self.out}: cannot lock {self.path} ({exc.strerror})") \
                from None
        self._fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds")}
        try:  # who holds it, for the message of the next audit; the lock is the flock itself
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f" (pid {int(info['pid'])} on {info['host']}, since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
