# SPDX-License-Identifier: Apache-2.0
"""DICOM output for the PACS: Secondary Capture overlays and Encapsulated PDF study pages
(:mod:`medig.pacs.objects`, :mod:`medig.pacs.export`), and sending them with C-STORE
(:mod:`medig.pacs.send`)."""
from __future__ import annotations
