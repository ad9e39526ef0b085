# SPDX-License-Identifier: Apache-2.0
"""DICOM output for the PACS: Secondary Capture overlays, Encapsulated PDF study pages, TID 1500
Measurement Reports and evidence Segmentations (:mod:`medig.pacs.objects`, :mod:`medig.pacs.sr`,
:mod:`medig.pacs.maps`, :mod:`medig.pacs.export`), and sending them with C-STORE
(:mod:`medig.pacs.send`). :func:`read_sr` reads a Measurement Report back into a result row."""
from __future__ import annotations

from typing import Any

__all__ = ["read_sr"]


def __getattr__(name: str) -> Any:
    # imported on use: highdicom is only loaded when DICOM output is asked for
    if name == "read_sr":
        from medig.pacs.sr import read_sr

        return read_sr
    raise AttributeError(f"module 'medig.pacs' has no attribute {name!r}")
