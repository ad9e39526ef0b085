# SPDX-License-Identifier: Apache-2.0
"""Audit step: record in the manifest what the audit explained and where the model's metadata
came from (so a reader of ``manifest.json`` knows what green means without the command line)."""
from __future__ import annotations

from medig.audit.finalise import FinishedAudit
from medig.audit.settings import AuditSettings
from medig.audit.targets import describe_target

__all__ = ["RecordTarget"]


class RecordTarget:
    """``manifest["target"]``: kind, name, member classes and indices, formula, source; and
    ``manifest["model_metadata"]``: each metadata piece with its source, and the loader's notes."""

    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings

    def __call__(self, audit: FinishedAudit) -> None:
        audit.manifest["target"] = describe_target(self.settings)
        if self.settings.model_metadata:
            audit.manifest["model_metadata"] = self.settings.model_metadata
