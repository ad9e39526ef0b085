# SPDX-License-Identifier: Apache-2.0
"""Audit step: the cohort's findings (:func:`medig.checks.findings.cohort_findings`) in
``manifest.json`` under ``"findings"``."""
from __future__ import annotations

from medig.audit.finalise import FinishedAudit
from medig.checks.findings import cohort_findings

__all__ = ["Findings"]


class Findings:
    """What the model relies on across the audit: "outside-retina", "fixed-location"."""

    def __call__(self, audit: FinishedAudit) -> None:
        audit.manifest["findings"] = cohort_findings(audit.rows)
