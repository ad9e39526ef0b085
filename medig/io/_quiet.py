# SPDX-License-Identifier: Apache-2.0
"""Silence decoder warnings and logging while a file is read, and keep decoders strict.

pydicom warnings and log records can quote element values (a malformed PatientName is quoted in
full), so nothing from the decoders may reach the user's console or log files during a read. A
disabled logger still hands the records of its *child* loggers (``pydicom.pixels.decoders.base``
logs decoder tracebacks) to the root handlers, so every logger of the decoder packages is
disabled, and the package loggers stop propagating, for the duration of the read.

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` (a process-wide switch other code may have set) is
forced off inside the block: a truncated file is an error, never an image padded with grey.

libjpeg, inside torchvision, prints its warnings ("Premature end of JPEG file") straight to the
C ``stderr``; :func:`captured_stderr` catches them at the file-descriptor level.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator

from PIL import ImageFile

__all__ = ["captured_stderr", "quiet", "reports_truncation"]

_PACKAGES = ("pydicom", "PIL", "pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm")


def _decoder_loggers() -> list[logging.Logger]:
    names = set(_PACKAGES)
    # Child loggers already created by the packages (pydicom.pixels.decoders.base, ...).
    for name in list(logging.root.manager.loggerDict):
        if name.split(".", 1)[0] in _PACKAGES:
            names.add(name)
    return [logging.getLogger(name) for name in sorted(names)]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Suppress all warnings and the decoder packages' loggers (children included) inside the
    block, and force Pillow's ``LOAD_TRUNCATED_IMAGES`` off."""
    loggers = _decoder_loggers()
    saved = [(lg, lg.disabled, lg.propagate) for lg in loggers]
    # A child logger created during the read (a decoder imported lazily) is not disabled, but its
    # records stop at the package logger, whose null handler also keeps logging's "last resort"
    # stderr handler out.
    sink = logging.NullHandler()
    packages = [logging.getLogger(name) for name in _PACKAGES]
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.disabled = True
            lg.propagate = False
        for lg in packages:
            lg.addHandler(sink)
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated
            for lg in packages:
                lg.removeHandler(sink)
            for lg, disabled, propagate in saved:
                lg.disabled = disabled
                lg.propagate = propagate


# File descriptor 2 belongs to the whole process: captures from several threads are serialised,
# so each sees only its own decoder's messages and fd 2 is always restored to the real stderr.
# (medig decodes in worker processes; threads that decode at once wait for each other here.)
_CAPTURE_LOCK = threading.Lock()


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Catch what C code writes to file descriptor 2 inside the block.

    Yields a list that holds the captured text (decoded leniently) once the block ends. Python's
    ``sys.stderr`` is flushed first so nothing of ours is swallowed. Where fd 2 cannot be
    redirected (no fd 2, no temporary file), the block runs uncaptured.
    """
    import sys

    found: list[str] = []
    with _CAPTURE_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            sink = tempfile.TemporaryFile()
        except OSError:
            yield found
            return
        try:
            saved = os.dup(2)
        except OSError:
            sink.close()
            yield found
            return
        with sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield found
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                found.append(sink.read(64 * 1024).decode("utf-8", "replace"))


def reports_truncation(messages: list[str], words: tuple[str, ...]) -> bool:
    """Whether decoder warnings caught by :func:`captured_stderr` say the data ended early (any
    of ``words``, lower case, in the messages)."""
    text = " ".join(messages).lower()
    return any(word in text for word in words)
