# SPDX-License-Identifier: Apache-2.0
"""Audit step: record in the manifest what the audit explained and where the model's metadata
came from (so a reader of ``manifest.json`` knows what green means without the command line)."""
from __future__ import annotations

from medig.audit.finalise import FinishedAudit

__all__ = ["RecordTarget"]


class RecordTarget:
    """``manifest["target"]``: kind, name, member classes and indices, formula, source; and
    ``manifest["model_metadata"]``: each metadata piece with its source, and the loader's notes."""

    def __call__(self, audit: FinishedAudit) -> None:
        audit.manifest["target"] = audit.plan.describe_target()
        if audit.plan.model_metadata:
            audit.manifest["model_metadata"] = audit.plan.model_metadata
