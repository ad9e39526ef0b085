# SPDX-License-Identifier: Apache-2.0
"""The audit: a folder of fundus photographs in, results, overlays and a PDF report out."""
from __future__ import annotations

from medig.audit.errors import AuditError, SettingsChangedError
from medig.audit.finalise import AuditSummary, finalise_audit
from medig.audit.pipeline import run_audit
from medig.audit.plan import AuditPlan, resolve
from medig.audit.records import (
    RESULT_FIELDS,
    ResultRow,
    explanation_rows,
    read_results,
    write_results,
)
from medig.audit.settings import AuditSettings

__all__ = [
    "RESULT_FIELDS",
    "AuditError",
    "AuditPlan",
    "AuditSettings",
    "AuditSummary",
    "ResultRow",
    "SettingsChangedError",
    "explanation_rows",
    "finalise_audit",
    "read_results",
    "resolve",
    "run_audit",
    "write_results",
]
