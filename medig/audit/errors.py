# SPDX-License-Identifier: Apache-2.0
"""The audit's own errors (bad files are rows, not exceptions: see :mod:`medig.audit.records`)."""
from __future__ import annotations

__all__ = ["AuditError", "AuditUsageError", "SettingsChangedError"]


class AuditError(RuntimeError):
    """The audit cannot run at all (no inputs, model not loadable, bad output folder)."""


class SettingsChangedError(AuditError):
    """The output folder holds an audit made with other settings (use a new --out or --force)."""


class AuditUsageError(AuditError):
    """The settings ask for something the model cannot give (a class it does not have, a group
    explained as a logit): a usage error, reported before any image is audited."""
