# SPDX-License-Identifier: Apache-2.0
"""Progress of an audit: a bar on a terminal, plain log lines otherwise (CI, cluster logs)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Images done, images per second and time left.

    On a terminal this is a ``tqdm`` bar; when the output is not a TTY (a log file, a Slurm job),
    a line every ``log_every`` seconds, so logs stay readable.
    """

    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None,
                 enabled: bool = True, log_every: float = 10.0, prefix: str = "") -> None:
        self.total, self.done = total, done
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.log_every = log_every
        self.prefix = prefix
        self._start = time.monotonic()
        self._last_log = self._start
        self._new = 0
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="img", file=self.stream,
                             desc=prefix or "audit", dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        self._new += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and (now - self._last_log >= self.log_every or self.done >= self.total):
            self._last_log = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = self._new / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = "?" if left != left else time.strftime("%H:%M:%S", time.gmtime(left))
        return (f"{self.prefix}{self.done}/{self.total} images, {rate:.2f} images/s, "
                f"ETA {eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
