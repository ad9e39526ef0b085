# SPDX-License-Identifier: Apache-2.0
"""The audit's own errors (bad files are rows, not exceptions: see :mod:`medig.audit.records`)."""
from __future__ import annotations

__all__ = ["AuditError", "SettingsChangedError"]


class AuditError(RuntimeError):
    """The audit cannot run at all (no inputs, model not loadable, bad output folder)."""


class SettingsChangedError(AuditError):
    """The output folder holds an audit made with other settings (use a new --out or --force)."""
