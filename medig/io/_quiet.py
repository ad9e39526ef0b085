# SPDX-License-Identifier: Apache-2.0
"""Silence decoder warnings and logging while a file is read.

pydicom warnings and log records can quote element values (a malformed PatientName is quoted in
full), so nothing from the decoders may reach the user's console or log files during a read.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_LOGGERS = ("pydicom", "PIL")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Suppress all warnings and the pydicom/PIL loggers inside the block."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    was_disabled = [lg.disabled for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.disabled = True
        try:
            yield
        finally:
            for lg, was in zip(loggers, was_disabled):
                lg.disabled = was
